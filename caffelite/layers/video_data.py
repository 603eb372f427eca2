"""VideoData: clips of consecutive frames for LRCN activity recognition.

video_data_param (a caffelite extension of caffe.proto, field 5001 of LayerParameter):
``source`` lists ``frames_folder label`` lines (UCF-101 style: one folder per video holding
its frames as image files; frames are ordered by name, with digit runs compared as numbers,
so 1.jpg < 2.jpg < 10.jpg and 0001.png < 0002.png); ``root_folder`` is prefixed to each
folder. A batch holds one clip of ``clip_length`` (T) consecutive frames from each of
``num_clips`` (N) videos. Tops, time-major as LRCN's LSTM reads them:

- top 0, frames: (T*N, C, H', W'); frame t of clip n is row t*N + n, so a per-frame conv
  trunk sees the batch as T*N images and a Reshape to (T, N, ...) feeds the LSTM;
- top 1, labels: (T, N), the video's label at every step;
- top 2, clip markers: (T, N), 0 at t = 0 and 1 after (the LSTM's ``cont`` input);
- top 3 (optional), video index: (N,), the 0-based line of each clip's video in the list.

Which clips (the start frame s; a clip is frames s .. s+T-1; a video shorter than T repeats
its last frame):

- TRAIN: videos in list order (reshuffled every epoch with ``shuffle``), N per batch,
  wrapping around; s uniform in [0, F - T] for a video of F frames;
- TEST: the centre clip, s = (F - T) // 2;
- TEST with ``test_all_clips``: every clip of every video, s = 0, clip_stride, 2 clip_stride,
  ... while s + T <= F (at least s = 0), in list order, N clips per batch, wrapping around.
  A batch may mix clips of several videos: average the predictions of the columns with the
  same top-3 video index (LRCN's clip averaging). ``clips_per_epoch`` holds the number of
  clips, so ``test_iter = ceil(clips_per_epoch / num_clips)`` covers each clip once.

transform_param applies with one crop offset and one mirror flag per clip (shared by its T
frames). ``new_height``/``new_width`` resize every frame; ``is_color`` as in ImageData.
"""
import os
import re

import numpy as np

from ..data.images import IMAGE_EXTENSIONS, read_images, read_listed_image
from ..data.listfile import read_list_file
from ..data.transformer import DataTransformer
from ..errors import LayerError
from ..proto import caffelite_pb2 as pb
from ..worker import shard_rng
from .base import register
from .data import PrefetchingDataLayer, _list_file, _source_dir


def _natural_key(name):
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]


def list_frames(folder):
    """The image files of a frame folder, in natural name order."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(folder, n) for n in sorted(names, key=_natural_key)]


def _find_videos(entries, list_file, root_folder):
    """Frame paths of every listed video; a missing or empty folder names the list line."""
    list_dir = os.path.dirname(os.path.abspath(list_file))
    videos = []
    for number, entry, _ in entries:
        path = os.path.join(root_folder, entry) if root_folder else entry
        candidates = [path] if os.path.isabs(path) else [path, os.path.join(list_dir, path)]
        folder = next((c for c in candidates if os.path.isdir(c)), None)
        if folder is None:
            raise LayerError(f'{list_file} line {number}: frame folder {path} does not exist')
        frames = list_frames(folder)
        if not frames:
            raise LayerError(f'{list_file} line {number}: frame folder {folder} holds no '
                             f'images ({", ".join(IMAGE_EXTENSIONS)})')
        videos.append(frames)
    return videos


class VideoClipSource:
    """Chooses the clips of each batch, decodes their frames and transforms them."""

    def __init__(self, videos, entries, list_file, clip_length, num_clips, mode, clips,
                 order, shuffle, is_color, new_height, new_width, transformer, rng, dtype,
                 rank=0, count=1, order_rng=None):
        self.videos, self.entries, self.list_file = videos, entries, list_file
        self.T, self.N, self.mode = clip_length, num_clips, mode
        self.clips = clips          # test_all_clips: [(video, start)] in order
        self.order = order          # otherwise: video order (shuffled with shuffle)
        self.cursor = 0
        self.shuffle, self.is_color = shuffle, is_color
        self.new_height, self.new_width = new_height, new_width
        self.transformer, self.rng, self.dtype = transformer, rng, dtype
        # With count > 1 workers (TRAIN), batch j of N clips goes to rank j % count; the video
        # order is reshuffled with order_rng, the same on every worker.
        self.rank, self.count, self.batches = rank, count, 0
        self.order_rng = order_rng or rng

    def _next_clips(self):
        """N (video index, start frame) pairs; advances the cursor with wrap-around."""
        while self.count > 1 and self.batches % self.count != self.rank:
            self._advance_videos(self.N)            # another worker's batch
            self.batches += 1
        self.batches += 1
        chosen = []
        for _ in range(self.N):
            if self.mode == 'all':
                chosen.append(self.clips[self.cursor])
                self.cursor = (self.cursor + 1) % len(self.clips)
                continue
            v = int(self.order[self.cursor])
            extra = max(len(self.videos[v]) - self.T, 0)
            start = int(self.rng.integers(0, extra + 1)) if self.mode == 'random' else extra // 2
            chosen.append((v, start))
            self._advance_videos(1)
        return chosen

    def _advance_videos(self, n):
        for _ in range(n):
            self.cursor += 1
            if self.cursor == len(self.order):
                self.cursor = 0
                if self.shuffle:
                    self.order_rng.shuffle(self.order)

    def next_batch(self):
        chosen = self._next_clips()
        jobs = []
        for v, start in chosen:
            frames = self.videos[v]
            for i in np.minimum(np.arange(start, start + self.T), len(frames) - 1):
                jobs.append((frames[i], self.entries[v][0]))
        images = read_images(jobs, self.list_file, self.is_color,
                               (self.new_height, self.new_width, 0, 0))
        for (path, number), image in zip(jobs, images):
            if image.shape != images[0].shape:
                raise LayerError(
                    f'{path} ({self.list_file} line {number}) is {image.shape[1]} x '
                    f'{image.shape[2]}, the batch\'s first frame {images[0].shape[1]} x '
                    f'{images[0].shape[2]}: set new_height/new_width')
        x = np.stack(images).reshape((self.N, self.T) + images[0].shape)  # (N, T, C, H, W)
        data = self.transformer.transform(x, self.rng, dtype=self.dtype, time_major=True)
        data = data.reshape((self.T * self.N,) + data.shape[2:])
        video = np.array([v for v, _ in chosen])
        labels = np.array([self.entries[v][2] for v in video], dtype=self.dtype)
        labels = np.ascontiguousarray(np.broadcast_to(labels, (self.T, self.N)))
        markers = np.ones((self.T, self.N), dtype=self.dtype)
        markers[0] = 0
        return data, labels, markers, video.astype(self.dtype)


@register('VideoData')
class VideoDataLayer(PrefetchingDataLayer):
    """Clips of ``clip_length`` frames from ``num_clips`` videos per batch (module docstring)."""
    deals_records = True
    min_top = 1
    max_top = 4

    def make_source(self, top):
        p = self.layer_param.video_data_param
        T, N = int(p.clip_length), int(p.num_clips)
        if T <= 0 or N <= 0:
            raise LayerError('video_data_param: clip_length and num_clips must be positive')
        if bool(p.new_height) != bool(p.new_width):
            raise LayerError('video_data_param: set both new_height and new_width, or neither')
        transformer = DataTransformer(self.layer_param.transform_param, self.phase,
                                      _source_dir(self))
        is_color = transformer.color_override(p.is_color)
        list_file = _list_file(self, p.source, 'video_data_param.source')
        entries = read_list_file(list_file, with_label=True)
        videos = _find_videos(entries, list_file, p.root_folder)

        order = np.arange(len(videos))
        clips = None
        if self.phase == pb.TRAIN:
            mode = 'random'
        elif p.test_all_clips:
            mode = 'all'
            if p.clip_stride <= 0:
                raise LayerError('video_data_param.clip_stride must be positive')
        else:
            mode = 'center'
        shuffle = bool(p.shuffle) and mode != 'all'
        count = self.solver_count if mode == 'random' else 1      # workers deal at TRAIN
        order_rng = shard_rng(self.rng, self.name) if count > 1 else self.rng
        if shuffle:
            order_rng.shuffle(order)
        if mode == 'all':
            clips = [(v, s) for v in range(len(videos))
                     for s in range(0, max(len(videos[v]) - T, 0) + 1, p.clip_stride)]
        self.clips_per_epoch = len(clips) if clips else len(videos)

        first = read_listed_image(videos[order[0]][0], entries[order[0]][0], list_file,
                                  is_color, p.new_height, p.new_width)
        c, h, w = transformer.output_shape(*first.shape)
        source = VideoClipSource(videos, entries, list_file, T, N, mode, clips, order,
                                 shuffle, is_color, p.new_height, p.new_width, transformer,
                                 self.rng, self.dtype, self.solver_rank if count > 1 else 0,
                                 count, order_rng)
        shapes = [(T * N, c, h, w), (T, N), (T, N), (N,)]
        return source, shapes[:len(top)]
