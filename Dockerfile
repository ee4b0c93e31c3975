# fh image: the package and the `fh` command. Share /dev/shm with co-located strategies
# (`docker run --ipc=host ...` or a shared tmpfs) and give it room: the default 64 MB is small.
FROM python:3.11-slim

WORKDIR /opt/fh
COPY setup.py README.md ./
COPY shm shm
COPY feedhandler feedhandler
COPY workers workers
COPY tools tools
COPY clickhouse clickhouse
RUN pip install --no-cache-dir . \
 && fh bench book --levels 1000 --diffs 100 > /dev/null  # compile and cache the book kernels once

ENTRYPOINT ["fh"]
CMD ["--help"]
