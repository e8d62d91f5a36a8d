#!/usr/bin/env bash
# Start Studio Worker at login on macOS (or stop doing so), outside the app:
#
#   ./autostart.sh [--remove] [/Applications/StudioWorker.app]
#
# Writes ~/Library/LaunchAgents/gg.minis.studio-worker-ui.plist: the same LaunchAgent,
# byte for byte, that the app's "Start at login" setting writes (workerlib/autostart.py;
# gg.minis.studio-worker-ui.plist beside this script is it for /Applications). It takes
# effect at the next login.
set -euo pipefail

LABEL=gg.minis.studio-worker-ui
remove=0 app=/Applications/StudioWorker.app
while [ $# -gt 0 ]; do
  case "$1" in
    --remove) remove=1 ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "autostart.sh: unknown option $1" >&2; exit 2 ;;
    *) app="${1%/}" ;;
  esac
  shift
done
agent="${HOME:?HOME is not set}/Library/LaunchAgents/$LABEL.plist"

if [ "$remove" -eq 1 ]; then
  if [ -f "$agent" ]; then rm -f "$agent"; echo "removed $agent"; else echo "nothing to remove"; fi
  exit 0
fi

exe="$app/Contents/MacOS/StudioWorker"
[ -x "$exe" ] || { echo "autostart.sh: $exe not found" >&2; exit 1; }
xml_escape() { local s="${1//&/&amp;}"; s="${s//</&lt;}"; printf '%s' "${s//>/&gt;}"; }
mkdir -p "$(dirname "$agent")"
cat > "$agent.tmp" <<PLIST
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>$LABEL</string>
	<key>ProcessType</key>
	<string>Interactive</string>
	<key>ProgramArguments</key>
	<array>
		<string>$(xml_escape "$exe")</string>
		<string>ui</string>
		<string>--autostart</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
</dict>
</plist>
PLIST
mv "$agent.tmp" "$agent"
echo "wrote $agent (Studio Worker starts at your next login)"
