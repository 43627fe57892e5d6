"""What the docker sandbox backend (sandbox/docker.py) runs inside its containers.

  Dockerfile     the default image for real users (python:3.11-slim + numpy + the sandbox user
                 65532); `docker build -t discovery-sandbox:3.11 sandbox/images`, then select it
                 with DISCOVERY_DOCKER_IMAGE (or DockerSandbox(image=...)).
  build.py       ensure_local_image(): an equivalent image assembled from this machine's own
                 interpreter and numpy (or any packages of the platform's environment) and
                 imported with `docker import`: no registry, no pulls. The default image when
                 DISCOVERY_DOCKER_IMAGE is not set, and the one the tests and benchmarks use.
  supervisor.py  the trusted supervisor, pid 1 of every sandbox container: streamed in by the
                 platform when the container starts (never baked into an image), it runs one
                 evaluation per request (sandbox/runner.py in /work), kills every process of the
                 evaluation, reads the result file back, wipes /work and verifies the container
                 before it may serve another evaluation.
"""
