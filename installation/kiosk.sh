#!/usr/bin/env bash
# Synesthesia kiosk launcher: the engine fullscreen with the kiosk preset, waiting for the display first.
# Used by installation/systemd/synesthesia.service; runnable by hand for a test:
#   installation/kiosk.sh [extra `synesthesia run` flags, e.g. --display 1]
#
# Environment (all optional):
#   SYNESTHESIA_HOME    checkout / install directory          (default: this script's parent directory)
#   SYNESTHESIA_PYTHON  python with synesthesia installed     (default: $SYNESTHESIA_HOME/.venv/bin/python)
#   SYNESTHESIA_CONFIG  venue config                          (default: installation/configs/kiosk.toml)
#   DISPLAY_WAIT_S      how long to wait for the X display    (default: 60; then it runs headless)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${SYNESTHESIA_HOME:-$(dirname "$here")}"
python="${SYNESTHESIA_PYTHON:-$home/.venv/bin/python}"
config="${SYNESTHESIA_CONFIG:-$home/installation/configs/kiosk.toml}"
wait_s="${DISPLAY_WAIT_S:-60}"

# SDL settings for an unattended fullscreen show.
export SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS=0   # a click on another screen must not minimise the show
export SDL_VIDEO_ALLOW_SCREENSAVER=0        # no screen blanking
export SDL_MOUSE_FOCUS_CLICKTHROUGH=1
export PYGAME_HIDE_SUPPORT_PROMPT=1
export PYTHONUNBUFFERED=1

# At boot the X server may come up after this service: wait for it (xset answers once it accepts clients).
if [[ -n "${DISPLAY:-}" ]] && command -v xset >/dev/null 2>&1; then
    for ((i = 0; i < wait_s; i++)); do
        xset -q >/dev/null 2>&1 && break
        sleep 1
    done
    xset s off -dpms 2>/dev/null || true     # no screensaver, no display power management
fi

cd "$home"
exec "$python" -m engine run --config "$config" --kiosk "$@"
