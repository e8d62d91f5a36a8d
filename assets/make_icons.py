"""Draws the app icon (a GPU chip lending a spark) and writes every format the
bundles and installers need. Run again after changing the drawing:

    .venv/bin/python assets/make_icons.py

studio-worker.png (512 px: Linux .desktop, window), studio-worker-256.png (hicolor),
studio-worker.ico (Windows exe and setup), studio-worker.icns (macOS .app).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 1024  # drawn large, scaled down with antialiasing
BG_TOP, BG_BOTTOM = (49, 46, 129), (124, 58, 237)  # indigo -> violet
CHIP, PIN, SPARK = (248, 250, 252), (203, 213, 225), (250, 204, 21)


def draw() -> Image.Image:
    gradient = Image.new("RGBA", (SIZE, SIZE))
    px = gradient.load()
    assert px is not None
    for y in range(SIZE):
        t = y / (SIZE - 1)
        colour = tuple(round(a + (b - a) * t) for a, b in zip(BG_TOP, BG_BOTTOM, strict=True))
        for x in range(SIZE):
            px[x, y] = (*colour, 255)
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rounded_rectangle((40, 40, SIZE - 40, SIZE - 40), radius=200, fill=255)
    icon = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    icon.paste(gradient, (0, 0), mask)

    d = ImageDraw.Draw(icon)
    lo, hi = 292, SIZE - 292
    for i in range(4):  # pins on each side of the chip
        p = lo + 40 + i * (hi - lo - 80) // 3
        d.rounded_rectangle((p - 22, lo - 90, p + 22, lo), radius=14, fill=PIN)
        d.rounded_rectangle((p - 22, hi, p + 22, hi + 90), radius=14, fill=PIN)
        d.rounded_rectangle((lo - 90, p - 22, lo, p + 22), radius=14, fill=PIN)
        d.rounded_rectangle((hi, p - 22, hi + 90, p + 22), radius=14, fill=PIN)
    d.rounded_rectangle((lo, lo, hi, hi), radius=60, fill=CHIP)
    c = SIZE // 2
    bolt = [(c + 40, c - 190), (c - 120, c + 30), (c - 5, c + 30),
            (c - 45, c + 190), (c + 120, c - 40), (c + 5, c - 40)]
    d.polygon(bolt, fill=SPARK)
    return icon


def main() -> None:
    icon = draw()
    icon.resize((512, 512), Image.Resampling.LANCZOS).save(HERE / "studio-worker.png")
    icon.resize((256, 256), Image.Resampling.LANCZOS).save(HERE / "studio-worker-256.png")
    icon.save(HERE / "studio-worker.ico",
              sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
    icon.save(HERE / "studio-worker.icns")


if __name__ == "__main__":
    main()
