; Studio Worker for Windows: a per-user installer (no administrator rights) for the
; one-file StudioWorker.exe built by pyinstaller.spec. Built by the release workflow:
;
;   iscc /DAppVersion=1.2.3 /DSourceExe=dist\onefile\StudioWorker.exe ^
;        /DOutputDir=dist\release installer\windows\StudioWorker.iss
;
; It installs into %LOCALAPPDATA%\Programs\Studio Worker (writable by the user, so the
; worker can update itself there), adds a Start menu entry, optionally starts the
; window at login (the same HKCU Run value the app's "Start at login" setting writes)
; and registers an uninstaller. Your settings in %APPDATA%\minis-studio-worker stay
; when it is uninstalled.

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceExe
  #define SourceExe "..\..\dist\onefile\StudioWorker.exe"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist\release"
#endif
#define AppName "Studio Worker"
#define ExeName "StudioWorker.exe"

[Setup]
; Never change AppId: upgrades and the uninstaller find the installation by it.
AppId={{2BB81534-EBC7-5A44-9039-07EEF9C5B18B}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=minis.gg
AppPublisherURL=https://minis.gg
AppSupportURL=https://github.com/minis-gg/studio-worker/issues
AppUpdatesURL=https://github.com/minis-gg/studio-worker/releases
; Per-user: {autopf} is %LOCALAPPDATA%\Programs when running without elevation.
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=StudioWorker-windows-x86_64-setup
SetupIconFile=..\..\assets\studio-worker.ico
UninstallDisplayIcon={app}\{#ExeName}
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; A running worker is asked to close (Restart Manager) before its exe is replaced.
CloseApplications=yes
RestartApplications=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "autostart"; Description: "Start Studio Worker when I log in"; GroupDescription: "Background mode:"; Flags: unchecked

[Files]
Source: "{#SourceExe}"; DestDir: "{app}"; DestName: "{#ExeName}"; Flags: ignoreversion
Source: "..\..\assets\studio-worker.ico"; DestDir: "{app}"; Flags: ignoreversion

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#ExeName}"; WorkingDir: "{app}"; IconFilename: "{app}\studio-worker.ico"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#ExeName}"; WorkingDir: "{app}"; IconFilename: "{app}\studio-worker.ico"; Tasks: desktopicon

[Registry]
; Start at login: the value workerlib/autostart.py writes for the same setting.
Root: HKCU; Subkey: "Software\Microsoft\Windows\CurrentVersion\Run"; ValueType: string; ValueName: "StudioWorker"; ValueData: """{app}\{#ExeName}"" ui --autostart"; Flags: uninsdeletevalue; Tasks: autostart

[Run]
Filename: "{app}\{#ExeName}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; The scheduled task `StudioWorker.exe install-service` may have added.
Filename: "{app}\{#ExeName}"; Parameters: "uninstall-service"; Flags: runhidden skipifdoesntexist waituntilterminated; RunOnceId: "RemoveService"

[UninstallDelete]
; Left by a self-update: the replaced exe (removed at the next start) and temp folders.
Type: files; Name: "{app}\{#ExeName}.old*"
Type: filesandordirs; Name: "{app}\.{#ExeName}.update-*"

[Code]
// The app's "Start at login" setting may have written the Run value after setup did
// not: remove it on uninstall either way.
procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usUninstall then
    RegDeleteValue(HKEY_CURRENT_USER, 'Software\Microsoft\Windows\CurrentVersion\Run',
      'StudioWorker');
end;
