# The packages the engine tests need (gradio for a real Gradio app, torch and diffusers for
# a tiny pipeline on the CPU), pinned to the versions the tests were written against.
# Sourced after _setup.sh, not run. Idempotent: a package already installed at its pinned
# version is left alone.

# torch comes first and alone: this exact version is served locally; any other spec pulls
# a multi-GB CUDA build.
ENGINE_TORCH_PIN="torch==2.13.0"
ENGINE_TEST_PINS=(
  "gradio==6.31.0"
  "gradio_client==2.7.2"
  "diffusers==0.42.1"
  "transformers==5.24.0"
  "safetensors==0.8.0"
)

# _engine_pins_missing PIN...: prints the pins whose package is absent or at another version.
_engine_pins_missing() {
  "$VENV/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        print(pin)
        continue
    # Local builds carry a suffix: 2.13.0+cpu is 2.13.0.
    if have.split("+")[0] != wanted:
        print(pin)
PY
}

ensure_engine_test_deps() {
  local missing
  missing="$(_engine_pins_missing "$ENGINE_TORCH_PIN")"
  if [ -n "$missing" ]; then
    printf '\033[1m==> %s\033[0m\n' "installing $ENGINE_TORCH_PIN into $VENV" >&2
    "$VENV/bin/python" -m pip install -q "$ENGINE_TORCH_PIN"
  fi
  mapfile -t missing < <(_engine_pins_missing "${ENGINE_TEST_PINS[@]}")
  if [ ${#missing[@]} -gt 0 ]; then
    printf '\033[1m==> %s\033[0m\n' "installing engine test packages: ${missing[*]}" >&2
    # The torch pin rides along so that nothing here can swap it for another build.
    "$VENV/bin/python" -m pip install -q "$ENGINE_TORCH_PIN" "${missing[@]}"
  fi
}
