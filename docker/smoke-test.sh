#!/usr/bin/env bash
# Container smoke test: build the CPU image, start it with a random-init model
# (VGLOSS_PRETRAINED=none, no network needed at run time), wait for /readyz, POST one real
# JPEG to /v1/classify and check for a 200 with predictions.
#
# Works without a Docker engine: buildah (chroot isolation) builds, podman (runc) runs, as
# root, the way docker/README.md describes. Exits non-zero with a one-line reason on failure.
#
# Environment (all optional):
#   IMAGE                  tag to build/run                   (localhost/vgloss:cpu)
#   BASE_IMAGE             Dockerfile BASE_IMAGE build arg     (localhost/debian:bookworm,
#                          debootstrapped here when absent; python:3.11-slim where a registry
#                          is reachable)
#   TORCH_SPEC             Dockerfile TORCH_SPEC build arg
#   TORCH_INDEX_URL        Dockerfile TORCH_INDEX_URL build arg
#   SMOKE_PIP_INDEX_DIR    a local PEP 503 mirror (DIR/simple/...) mounted into the build and
#                          used as an extra index             (/opt/pypi-more, if present)
#   SMOKE_CA_BUNDLE        host CA bundle given to pip in the build
#                                                             (/etc/ssl/certs/ca-certificates.crt)
#   SMOKE_BUILD_ARGS       extra arguments for `buildah bud`
#   SMOKE_SKIP_BUILD=1     reuse an already built $IMAGE
#   SMOKE_BUILD_ONLY=1     stop after the build
#   SMOKE_JPEG             image to classify   (../shared/data/imagenet-sample/<first .jpg/.JPEG>)
#   SMOKE_PORT             port for the server (a free one)
#   SMOKE_TIMEOUT          seconds to wait for /readyz         (900)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

IMAGE="${IMAGE:-localhost/vgloss:cpu}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian:bookworm}"
SMOKE_PIP_INDEX_DIR="${SMOKE_PIP_INDEX_DIR-/opt/pypi-more}"
SMOKE_CA_BUNDLE="${SMOKE_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-900}"
SMOKE_SKIP_BUILD="${SMOKE_SKIP_BUILD:-0}"
SMOKE_BUILD_ONLY="${SMOKE_BUILD_ONLY:-0}"
container=""

say() { printf '[smoke] %s\n' "$*"; }
fail() {
    printf '[smoke] FAIL: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    if [ -n "$container" ]; then
        if [ "$rc" -ne 0 ]; then
            printf '[smoke] ---- container logs (last 200 lines) ----\n' >&2
            podman logs --tail 200 "$container" >&2 || true
            printf '[smoke] ---- end of container logs ----\n' >&2
        fi
        podman --runtime runc rm -f -v "$container" >/dev/null 2>&1 || true
        say "removed container $container"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

for tool in buildah podman runc curl python3; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "'$tool' not found (Debian: apt-get install podman buildah runc debootstrap curl python3)"
done

# podman's default ulimits cannot be set in some sandboxes ("error setting rlimit type 7");
# without a system containers.conf, use one that leaves them alone.
if [ -z "${CONTAINERS_CONF:-}" ] && [ ! -e /etc/containers/containers.conf ]; then
    conf="$(mktemp /tmp/vgloss-containers.XXXXXX.conf)"
    printf '[containers]\ndefault_ulimits = []\n' >"$conf"
    export CONTAINERS_CONF="$conf"
    say "using $conf (default_ulimits = [])"
fi

# ---------------------------------------------------------------------------------- build
if [ "$SMOKE_SKIP_BUILD" != 1 ]; then
    if ! podman image exists "$BASE_IMAGE"; then
        [ "$BASE_IMAGE" = localhost/debian:bookworm ] ||
            fail "base image $BASE_IMAGE is not present (pull it, or leave BASE_IMAGE unset)"
        command -v debootstrap >/dev/null 2>&1 || fail "'debootstrap' not found (apt-get install debootstrap)"
        [ "$(id -u)" -eq 0 ] || fail "debootstrap needs root"
        rootfs="$(mktemp -d /tmp/vgloss-rootfs.XXXXXX)"
        say "debootstrapping $BASE_IMAGE into $rootfs (a few minutes)"
        debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >/dev/null ||
            fail "debootstrap failed"
        tar -C "$rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null || fail "podman import failed"
        rm -rf "$rootfs"
    fi

    build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg VARIANT=cpu)
    volumes=()
    if [ -r "$SMOKE_CA_BUNDLE" ]; then
        volumes+=(--volume "$SMOKE_CA_BUNDLE:/run/host-ca.crt:ro")
        build_args+=(--build-arg PIP_CERT=/run/host-ca.crt)
    fi
    if [ -n "$SMOKE_PIP_INDEX_DIR" ] && [ -d "$SMOKE_PIP_INDEX_DIR/simple" ]; then
        # A local mirror with torch + torchvision; the pytorch CPU index is not reachable here.
        volumes+=(--volume "$SMOKE_PIP_INDEX_DIR:/opt/local-index:ro")
        build_args+=(--build-arg "PIP_EXTRA_INDEX_URL=file:///opt/local-index/simple")
        TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
        TORCH_INDEX_URL="${TORCH_INDEX_URL:-none}"
    fi
    [ -z "${TORCH_SPEC:-}" ] || build_args+=(--build-arg "TORCH_SPEC=$TORCH_SPEC")
    [ -z "${TORCH_INDEX_URL:-}" ] || build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
    # shellcheck disable=SC2206
    extra=(${SMOKE_BUILD_ARGS:-})

    say "building $IMAGE from $repo (base $BASE_IMAGE)"
    set -x
    buildah bud --isolation chroot --network host --layers --force-rm --format docker \
        "${volumes[@]}" "${build_args[@]}" "${extra[@]}" \
        -t "$IMAGE" -f "$repo/Dockerfile" "$repo" || { set +x; fail "image build failed"; }
    { set +x; } 2>/dev/null
    say "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1/1e9}'))"
fi
podman image exists "$IMAGE" || fail "image $IMAGE not found (build it, or unset SMOKE_SKIP_BUILD)"
[ "$SMOKE_BUILD_ONLY" != 1 ] || { say "build only: done"; exit 0; }

# ---------------------------------------------------------------------------------- run
if [ -z "${SMOKE_JPEG:-}" ]; then
    sample_dir="$repo/../shared/data/imagenet-sample"
    SMOKE_JPEG="$(find "$sample_dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' \) 2>/dev/null | sort | head -n 1 || true)"
    [ -n "$SMOKE_JPEG" ] || fail "no JPEG under $sample_dir (set SMOKE_JPEG)"
fi
[ -r "$SMOKE_JPEG" ] || fail "cannot read $SMOKE_JPEG"

SMOKE_PORT="${SMOKE_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
base_url="http://127.0.0.1:$SMOKE_PORT"
name="vgloss-smoke-$$"

say "starting $IMAGE as $name on port $SMOKE_PORT (VGLOSS_PRETRAINED=none)"
container="$(podman --runtime runc run -d --name "$name" --network host \
    -e VGLOSS_PRETRAINED=none -e VGLOSS_DEVICE=cpu \
    -e HEALTHCHECK_URL="$base_url/readyz" \
    "$IMAGE" vgloss serve --host 127.0.0.1 --port "$SMOKE_PORT")" || {
    container="$name"
    fail "podman run failed"
}
container="$name"

uid="$(podman exec "$container" id -u)" || fail "podman exec failed"
[ "$uid" != 0 ] || fail "the server runs as root"
say "server runs as uid $uid"

say "waiting up to ${SMOKE_TIMEOUT}s for $base_url/readyz"
start=$SECONDS
code=000
while :; do
    state="$(podman inspect --format '{{.State.Status}}' "$container" 2>/dev/null || echo gone)"
    [ "$state" = running ] || fail "container stopped while starting (state: $state)"
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base_url/readyz" || true)"
    [ "$code" = 200 ] && break
    [ $((SECONDS - start)) -lt "$SMOKE_TIMEOUT" ] ||
        fail "/readyz not 200 after ${SMOKE_TIMEOUT}s (last status: $code)"
    sleep 3
done
say "/readyz 200 after $((SECONDS - start))s"

code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$base_url/healthz" || true)"
[ "$code" = 200 ] || fail "/healthz answered $code"

# The image's own HEALTHCHECK (needs --format docker at build time to be kept).
if [ "$(podman inspect --format '{{if .Config.Healthcheck}}yes{{end}}' "$container" 2>/dev/null)" = yes ]; then
    podman healthcheck run "$container" >/dev/null 2>&1 || fail "the image HEALTHCHECK reports unhealthy"
    say "image HEALTHCHECK: healthy"
else
    fail "the image has no HEALTHCHECK"
fi

resp="$(mktemp /tmp/vgloss-smoke-resp.XXXXXX.json)"
say "POST $base_url/v1/classify images=@$SMOKE_JPEG"
code="$(curl -s -o "$resp" -w '%{http_code}' --max-time 120 \
    -F "images=@$SMOKE_JPEG;type=image/jpeg" -F top_k=3 "$base_url/v1/classify" || true)"
if [ "$code" != 200 ]; then
    head -c 2000 "$resp" >&2 || true
    echo >&2
    rm -f "$resp"
    fail "/v1/classify answered $code"
fi
python3 - "$resp" <<'EOF' || { rm -f "$resp"; fail "/v1/classify: no predictions in the response"; }
import json
import sys

body = json.load(open(sys.argv[1]))
results = body.get("results") or []
preds = results[0].get("predictions") if results else None
if not preds or not all("class_id" in p and "score" in p for p in preds):
    print(json.dumps(body)[:2000], file=sys.stderr)
    sys.exit(1)
print(f"[smoke] model={body.get('model')} class_set={body.get('class_set')} "
      f"descriptions={body.get('descriptions')}")
for p in preds:
    print(f"[smoke]   {p['class_id']}  {p.get('label')!s:30.30}  score={p['score']:.4f}")
EOF
rm -f "$resp"
say "OK: $IMAGE served /readyz and classified $(basename "$SMOKE_JPEG")"
