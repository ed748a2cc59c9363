#!/usr/bin/env bash
# `make test-container`: build the real Dockerfile, run the image, check it, bring compose up.
#
# For a machine without a Docker engine (CI, this project's dev machines): Debian's podman,
# buildah, runc and debootstrap, installed here when missing (needs root and apt). The CUDA base
# image cannot be pulled offline, so the Dockerfile is built against a minimal Debian bootstrapped
# into .deploy/ (BASE_IMAGE is a build argument for exactly this); everything else is the real
# build: the pinned dependencies, the package, the non-root user, HEALTHCHECK (--format docker).
#
# Steps: configure podman (vfs storage under .deploy/, runc, cgroupfs) -> bootstrap + import the
# base -> podman build -> run on 127.0.0.1 read-only like Kubernetes does -> wait for /readyz ->
# POST a real image to /colorize and check the answer -> podman healthcheck run -> SIGTERM and
# check the drain -> podman-compose up with docker-compose.yml + docker-compose.cpu.yml -> check
# again -> down. Everything it creates is removed at the end (KEEP=1 keeps the images; the
# bootstrapped base tarball in .deploy/ is kept as a cache: `make clean-container` removes it).
# Only loopback addresses are ever contacted, apart from the package registries during the build.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
WORK="$ROOT/.deploy"
PY="${PY:-$ROOT/.venv/bin/python}"
PORT="${PORT:-18000}"
COMPOSE_PORT="${COMPOSE_PORT:-18001}"
TAG="${TAG:-localhost/scgan-colorize:container-check}"
BASE_TAG="localhost/scgan-base:bookworm"
CONTAINER="scgan-container-check"
PROJECT="scgan-container-check"
SUITE="${SUITE:-bookworm}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

log() { printf '\n== %s\n' "$*"; }
# Without systemd, podman cannot schedule periodic health checks and says so on every start and
# stop; `podman healthcheck run` (below) runs the check itself. Keep that noise out of the log.
podman() { command podman "$@" 2> >(grep -v 'systemd connection' >&2); }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# -- tools -------------------------------------------------------------------------------------
need=()
for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
    [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || fail "missing ${need[*]}: apt-get install podman buildah runc debootstrap"
    log "installing ${need[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman buildah runc debootstrap netavark aardvark-dns iptables >/dev/null
fi
[[ -x "$PY" ]] || fail "$PY missing: run make install first"
"$PY" -c 'import podman_compose' 2>/dev/null || fail "podman-compose missing: make install (dev extra)"

# -- podman, confined to .deploy/ --------------------------------------------------------------
mkdir -p "$WORK"
# runc refuses rlimits above what this process may set; stay within the hard limits.
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[[ $nofile == unlimited || $nofile -gt 16384 ]] && nofile=16384
[[ $nproc == unlimited || $nproc -gt 16384 ]] && nproc=16384
cat >"$WORK/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
EOF
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf" CONTAINERS_CONF="$WORK/containers.conf"

cleanup() {
    local rc=$?
    set +e
    log "cleaning up"
    podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1
    (cd "$WORK/compose" 2>/dev/null && "$PY" -m podman_compose -p "$PROJECT" "${COMPOSE_FILES[@]}" down -t 0 >/dev/null 2>&1)
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" -q | xargs -r podman rm -f -t 0 >/dev/null 2>&1
    podman network rm -f "${PROJECT}_default" >/dev/null 2>&1
    if [[ "${KEEP:-0}" != 1 ]]; then
        podman rmi -f "$TAG" "$BASE_TAG" >/dev/null 2>&1
        podman system prune -a -f >/dev/null 2>&1
        rm -rf "$WORK/storage" "$WORK/run" "$WORK/compose" "$WORK/rootfs"
    fi
    exit $rc
}
COMPOSE_FILES=()
trap cleanup EXIT

# -- the base image: a minimal Debian standing in for the CUDA image ------------------------------
if ! podman image exists "$BASE_TAG"; then
    if [[ ! -s "$WORK/base-$SUITE.tar" ]]; then
        log "debootstrap $SUITE (minbase) into .deploy/rootfs"
        rm -rf "$WORK/rootfs"
        debootstrap --variant=minbase "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
        # pip inside the build trusts this machine's CA bundle (TLS-intercepting proxies) and, where
        # this machine keeps local wheel indexes (torch's CUDA wheels), reads them from the mounts below.
        mkdir -p "$WORK/rootfs/etc/ssl/certs"
        cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/host-ca-bundle.crt"
        {
            echo "[global]"
            echo "cert = /etc/ssl/certs/host-ca-bundle.crt"
            indexes=""
            for d in /opt/pypi /opt/pypi-more; do [[ -d $d/simple ]] && indexes+=" file://$d/simple"; done
            [[ -n $indexes ]] && echo "extra-index-url =$indexes"
        } >"$WORK/rootfs/etc/pip.conf"
        tar -C "$WORK/rootfs" -cf "$WORK/base-$SUITE.tar" .
        rm -rf "$WORK/rootfs"
    fi
    log "podman import -> $BASE_TAG"
    podman import "$WORK/base-$SUITE.tar" "$BASE_TAG" >/dev/null
fi

# -- build ---------------------------------------------------------------------------------------
volumes=()
for d in /opt/pypi /opt/pypi-more /opt/wheels; do [[ -d $d ]] && volumes+=(--volume "$d:$d:ro"); done
if [[ "${SKIP_BUILD:-0}" != 1 ]] || ! podman image exists "$TAG"; then
    log "podman build (BASE_IMAGE=$BASE_TAG) -> $TAG"
    start=$SECONDS
    podman build --format docker --layers=false --network host "${volumes[@]}" \
        --build-arg BASE_IMAGE="$BASE_TAG" -t "$TAG" -f Dockerfile . 2>&1 | tee "$WORK/build.log" | grep -E '^(STEP|COMMIT|bundled|Successfully)' || true
    [[ ${PIPESTATUS[0]} -eq 0 ]] || { tail -40 "$WORK/build.log"; fail "podman build"; }
    echo "built in $((SECONDS - start)) s"
fi

log "image metadata"
podman image inspect "$TAG" >"$WORK/image-inspect.json"
"$PY" - "$WORK/image-inspect.json" <<'EOF'
import json, sys
[image] = json.load(open(sys.argv[1]))
assert image["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json", image["ManifestType"]
config = dict(image["Config"], Healthcheck=image.get("Healthcheck"))
user = config.get("User", "")
assert user and user.split(":")[0] not in ("", "0", "root"), f"runs as root: {user!r}"
assert "8000/tcp" in (config.get("ExposedPorts") or {}), config.get("ExposedPorts")
health = config.get("Healthcheck") or {}
assert "/opt/scgan/healthcheck.py" in " ".join(health.get("Test", [])), health
assert config.get("Entrypoint") == ["/usr/bin/tini", "--"], config.get("Entrypoint")
assert config.get("Cmd") == ["scgan-serve"], config.get("Cmd")
env = dict(item.split("=", 1) for item in config.get("Env", []))
assert env["SCGAN_HOST"] == "0.0.0.0" and env["SCGAN_DEVICE"] == "auto" and env["SCGAN_PRECISION"] == "auto", env
print(f"user {user}, cmd {config['Entrypoint'] + config['Cmd']}, healthcheck {health['Test']}")
EOF
podman image ls "$TAG" --format '{{.Repository}}:{{.Tag}} {{.Size}}'

# -- checks against a running service --------------------------------------------------------------
check_service() {  # base URL
    "$PY" - "$1" <<'EOF'
import io, sys, time
import httpx
from PIL import Image, ImageDraw
base = sys.argv[1]
deadline = time.monotonic() + 600
while True:
    try:
        r = httpx.get(f"{base}/readyz", timeout=5)
        if r.status_code == 200:
            break
    except httpx.TransportError:
        pass
    assert time.monotonic() < deadline, "not ready after 600 s"
    time.sleep(1)
print("ready:", r.json())
assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
info = httpx.get(f"{base}/v1/model", timeout=5).json()
print("model:", {k: info[k] for k in list(info)[:6]})
# A photograph-like input: a gray gradient with shapes, an odd size, as PNG (answered as PNG).
img = Image.linear_gradient("L").resize((333, 217))
draw = ImageDraw.Draw(img)
draw.ellipse((40, 30, 160, 150), fill=220)
draw.rectangle((200, 60, 300, 190), fill=40)
buf = io.BytesIO()
img.save(buf, "PNG")
r = httpx.post(f"{base}/colorize", files={"file": ("photo.png", buf.getvalue(), "image/png")}, timeout=120)
assert r.status_code == 200, (r.status_code, r.text[:500])
assert r.headers["content-type"] == "image/png", r.headers
out = Image.open(io.BytesIO(r.content))
assert out.size == img.size and out.mode == "RGB", (out.size, out.mode)
sent = Image.open(buf)
diff = max(abs(a - b) for a, b in zip(out.convert("L").tobytes(), sent.convert("L").tobytes()))
assert diff <= 3, f"luma changed by {diff}"
print(f"colorize: {out.size} {out.mode}, luma kept within {diff}, {len(r.content)} bytes,",
      "x-batch-size", r.headers.get("x-batch-size"))
metrics = httpx.get(f"{base}/metrics", timeout=5).text
assert 'scgan_images_processed_total{endpoint="colorize"} 1.0' in metrics, "images counter"
assert "scgan_ready 1.0" in metrics
print("metrics: scgan_images_processed_total{endpoint=\"colorize\"} 1.0, scgan_ready 1.0")
EOF
}

log "podman run on 127.0.0.1:$PORT (read-only root, /tmp tmpfs, CPU)"
podman rm -f -t 0 "$CONTAINER" >/dev/null 2>&1 || true
podman run -d --name "$CONTAINER" -p "127.0.0.1:$PORT:8000" --read-only --tmpfs /tmp:rw,size=512m \
    --cap-drop ALL --security-opt no-new-privileges \
    -e SCGAN_DEVICE=cpu -e SCGAN_MAX_BATCH_SIZE=2 -e SCGAN_TORCH_THREADS=1 -e SCGAN_CPU_THREADS=1 "$TAG" >/dev/null
check_service "http://127.0.0.1:$PORT" || { podman logs --tail 50 "$CONTAINER"; fail "service checks"; }

log "podman healthcheck run"
podman healthcheck run "$CONTAINER" && echo "healthy"
[[ "$(podman exec "$CONTAINER" id -u)" == 10001 ]] || fail "not uid 10001"
podman exec "$CONTAINER" sh -c 'touch /opt/venv/x 2>/dev/null' && fail "root filesystem is writable"
echo "uid 10001, root filesystem read-only"

log "podman stop (SIGTERM -> drain)"
podman stop -t 75 "$CONTAINER" >/dev/null
code=$(podman inspect "$CONTAINER" --format '{{.State.ExitCode}}')
podman logs "$CONTAINER" 2>&1 | grep -q "shutdown complete" || { podman logs --tail 30 "$CONTAINER"; fail "no drain"; }
echo "exit code $code, log says shutdown complete"
[[ $code == 0 || $code == 143 ]] || fail "exit code $code"
podman rm -f "$CONTAINER" >/dev/null

# -- compose -----------------------------------------------------------------------------------------
log "podman-compose up: docker-compose.yml + docker-compose.cpu.yml on 127.0.0.1:$COMPOSE_PORT"
mkdir -p "$WORK/compose/checkpoints"
cp docker-compose.yml docker-compose.cpu.yml "$WORK/compose/"
mkdir -p "$WORK/compose/docker" && cp -r docker/prometheus docker/grafana "$WORK/compose/docker/"
# The test override: the image just built (never build or pull), small CPU settings.
cat >"$WORK/compose/compose.check.yml" <<EOF
services:
  scgan:
    image: $TAG
    pull_policy: never
    environment:
      SCGAN_MAX_BATCH_SIZE: "2"
      SCGAN_TORCH_THREADS: "1"
      SCGAN_CPU_THREADS: "1"
EOF
cat >"$WORK/compose/.env" <<EOF
BIND_ADDRESS=127.0.0.1
HOST_PORT=$COMPOSE_PORT
CHECKPOINT_DIR=./checkpoints
EOF
COMPOSE_FILES=(-f docker-compose.yml -f docker-compose.cpu.yml -f compose.check.yml)
(cd "$WORK/compose" && "$PY" -m podman_compose -p "$PROJECT" "${COMPOSE_FILES[@]}" up -d --no-build 2>&1 | tail -3)
check_service "http://127.0.0.1:$COMPOSE_PORT" || { podman ps -a; podman logs --tail 50 "${PROJECT}_scgan_1"; fail "compose checks"; }
log "compose container: health check from the compose file, read-only root"
podman inspect "${PROJECT}_scgan_1" --format '{{json .Config.Healthcheck}} {{.HostConfig.ReadonlyRootfs}}'
podman healthcheck run "${PROJECT}_scgan_1" && echo "healthy"
podman exec "${PROJECT}_scgan_1" sh -c 'touch /opt/venv/x 2>/dev/null' && fail "compose: root filesystem is writable"
(cd "$WORK/compose" && "$PY" -m podman_compose -p "$PROJECT" "${COMPOSE_FILES[@]}" down -t 75 2>&1 | tail -2)

log "container check passed"
