# A serving image with one model baked in (what deploy/deployment.yaml runs): build the service
# image first (the repository's Dockerfile), then, from the repository root,
#   docker build -f deploy/model.Dockerfile --build-arg MODEL_DIR=models/v1 -t registry.example.com/fraud/fraudvae-model:v1 .
ARG FRAUDVAE_IMAGE=fraudvae:latest
FROM ${FRAUDVAE_IMAGE}
ARG MODEL_DIR=models/v1
COPY --chown=10001:10001 ${MODEL_DIR} /model
