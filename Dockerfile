# ray-macaw on the Ray 2.60.0 / Python 3.11 image. One image for every node of a cluster (head,
# CPU workers, GPU workers); docker-compose.yml and cluster/ use it.
#
#   CPU (default):  docker build -t ray-macaw:2.60.0 .
#   GPU:            docker build -t ray-macaw:2.60.0-gpu \
#                     --build-arg RAY_IMAGE_TAG=2.60.0-py311-gpu \
#                     --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#
# The Ray version in RAY_IMAGE_TAG and TORCH_VERSION must match the pins in pyproject.toml
# (tests/test_cluster_files.py checks both).
ARG RAY_IMAGE_TAG=2.60.0-py311-cpu
FROM rayproject/ray:${RAY_IMAGE_TAG}

# torch first, from the CPU index: an unpinned or PyPI torch pulls a multi-GB CUDA build
# (the GPU variant sets TORCH_INDEX_URL to PyPI, whose Linux wheels are the CUDA ones).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The shared volume's mount point, owned by the image's `ray` user: an empty named volume takes
# this directory's owner when it is first mounted, so every node can write data and Tune results.
# The checkout's directory too (pip builds the project in place).
USER root
RUN mkdir -p /shared /home/ray/ray-macaw && chown ray:users /shared /home/ray/ray-macaw

USER ray
WORKDIR /home/ray/ray-macaw
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# The project itself (no dev extras). The checkout stays in the image, so tune_configs/ can be
# named there (cluster/rayjob.yaml runs /home/ray/ray-macaw/tune_configs/main/cheetah-vel.yaml).
COPY --chown=ray:users . /home/ray/ray-macaw
RUN pip install --no-cache-dir /home/ray/ray-macaw \
    && python -c "import ray, torch, ray_macaw; print('ray', ray.__version__, 'torch', torch.__version__)"
