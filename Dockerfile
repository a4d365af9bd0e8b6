# The sidecar image. For GPU inference build FROM a CUDA-enabled PyTorch image instead,
# or keep this one and point a route at a remote inference server.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY tui ./tui
COPY configs ./configs
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch \
 && pip install .

EXPOSE 9200 9301
USER nobody
ENTRYPOINT ["rerank-sidecar"]
CMD ["serve", "--config", "/app/configs/compose.yaml"]
