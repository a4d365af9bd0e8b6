# The sidecar image (CPU PyTorch). For GPU inference point a route at a remote serving engine
# (vLLM, TEI, ...: docker-compose.yml's gpu profile), or build FROM a CUDA-enabled PyTorch image.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY tui ./tui
COPY configs ./configs
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch \
 && pip install .

# model downloads go to a volume (docker-compose.yml mounts one here) writable by the service user,
# and so do the ONNX exports of the models that run on the CPU (made once per model, then reused)
ENV HF_HOME=/cache/huggingface RERANK_SIDECAR_CACHE=/cache/huggingface/rerank-sidecar
RUN mkdir -p /cache/huggingface && chown nobody /cache/huggingface

EXPOSE 9200 9301
USER nobody
ENTRYPOINT ["rerank-sidecar"]
CMD ["serve", "--config", "/app/configs/compose.yaml"]
