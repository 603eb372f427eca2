"""LRCN's library code (Donahue et al.): captioning, activity recognition, video description.

The command-line scripts under tools/ parse arguments and call into these modules:

    vocabulary            LRCN tokenization, vocabulary.txt, the decoder's word ids
    coco_json             COCO captions / results JSON -> references / candidates
    coco_hdf5             COCO captions -> LRCN's aligned HDF5 caption streams
    shapes_captions       the seeded colored-shapes captioning images and captions
    shapes_dataset        data/shapes_captions/ as the shipped LRCN prototxts read it
    search                greedy / sampling / beam search over a one-step decoder
    captioner             the deploy image + word nets as a captioner
    metrics               BLEU-1..4 and CIDEr-D (coco-caption's definitions)
    retrieval             image <-> caption retrieval by log p(caption | image): R@K, Medr
    nearest_neighbour     1NN caption baselines (cosine over the CNN's features)
    gallery               caption gallery and confusion-matrix pictures (matplotlib)
    training              run an example's solver; name its final weights
    activity_videos       the seeded toy activity videos and their optical flow
    activity              clip averaging, late fusion and Table 1 of the activity models
    video_description_data  the seeded toy video-description (CRF) data
    video_description     the three video-description models: streams, decoding, BLEU-4
"""
