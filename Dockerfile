# relance in production: one image for every role (api, worker, beat, migrate); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The dependencies exactly as locked (versions and hashes: `make lock` regenerates the file),
# in a layer of their own that is rebuilt only when the lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
# Then relance alone, on top of them; `pip check` fails the build if the lock misses one.
# README.md is the package's long description (pyproject.toml): pip needs it to build.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . && pip check && rm -rf /app/src

# Never run as root. /data holds Beat's schedule file (RELANCE_DATA_DIR).
RUN useradd --create-home --uid 10001 relance \
    && mkdir /data && chown relance:relance /data
USER relance
WORKDIR /home/relance
ENV RELANCE_DATA_DIR=/data

EXPOSE 8000
ENTRYPOINT ["relance"]
CMD ["api", "--host", "0.0.0.0"]
