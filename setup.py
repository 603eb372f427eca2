from setuptools import find_packages, setup

setup(
    name='caffelite',
    version='0.1.0',
    description='Caffe rebuilt in Python on NumPy (CPU) and CuPy (GPU); LRCN first',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=find_packages(include=['caffelite', 'caffelite.*']),
    package_data={'caffelite.proto': ['caffelite.proto']},
    install_requires=[
        'numpy~=2.4',
        'protobuf~=7.36',      # caffelite_pb2.py was generated for the 7.x runtime
        'pillow~=13.0',
        'h5py~=3.16',
        'numba~=0.68.1',       # CPU kernels (layers/cpu_kernels.py); optional at import
    ],
    extras_require={
        'gpu': ['cupy-cuda13x~=14.2'],     # CUDA 13; the GPU check: make gpu-check
        'mpi': ['mpi4py~=4.1', 'mpich~=5.0'],
        'lmdb': ['lmdb~=3.0'],
        'draw': ['pydot~=4.0'],
        # tools/plot_training_log.py, tools/gallery.py (matplotlib), with the db and net drawing
        'plot': ['matplotlib==3.11.2', 'lmdb~=3.0', 'pydot~=4.0'],
        'test': ['pytest~=9.0', 'grpcio-tools~=1.85', 'lmdb~=3.0', 'pydot~=4.0', 'scipy~=1.17',
                 'matplotlib==3.11.2'],
        # the peer the benchmarks and the LSTM agreement test compare against (CPU build)
        'bench': ['torch==2.13.0'],
        # caffelite export_onnx / caffelite.onnx, and the runtime its tests check against
        'onnx': ['onnx==1.23.2', 'onnxruntime==1.31.1'],
    },
    entry_points={'console_scripts': ['caffelite = caffelite.cli:main']},
)
