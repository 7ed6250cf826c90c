"""The style catalog, as data.

Pop-culture looks are described by their visual traits only, never by
trademarked names: the model needs the traits, and the catalog must be safe
to show in an app store listing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pixme.errors import InvalidRequest

CATALOG_VERSION = "2026-11-24.1"


class Fidelity(StrEnum):
    """How strictly a style must keep the person's facial features."""

    HIGH = "high"  # the face stays recognisably photographic in structure
    MEDIUM = "medium"
    LOW = "low"  # heavy stylisation; identity carried by hair, colours, shape


@dataclass(frozen=True)
class Style:
    id: str
    name: str
    description: str
    preview_hint: str
    prompt: str
    fidelity: Fidelity

    def public(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "preview_hint": self.preview_hint,
            "fidelity": self.fidelity.value,
        }


_FIDELITY_CLAUSE = {
    Fidelity.HIGH: (
        "Keep the person's exact facial structure, eye shape, nose, mouth, skin tone, "
        "hairline and hairstyle so that friends recognise them at a glance."
    ),
    Fidelity.MEDIUM: (
        "Keep the person's face shape, hairstyle, hair colour, skin tone and "
        "distinctive features recognisable."
    ),
    Fidelity.LOW: (
        "Keep the person's hairstyle, hair colour, skin tone and overall likeness "
        "while fully adopting the look."
    ),
}

STYLES: tuple[Style, ...] = (
    Style(
        "comics",
        "Comic book",
        "Bold ink outlines, flat saturated colours and a halftone-dot background.",
        "ink lines, halftone dots",
        "Redraw this person as a comic book hero panel: bold black ink outlines, "
        "flat saturated colours with cel shading and a halftone-dot background.",
        Fidelity.HIGH,
    ),
    Style(
        "manga",
        "Manga",
        "Black-and-white manga page look with screentone shading and clean ink lines.",
        "screentone, ink",
        "Redraw this person as a black and white manga illustration: clean ink lines, "
        "grey screentone shading in a few flat levels, white paper background.",
        Fidelity.HIGH,
    ),
    Style(
        "zombie",
        "Zombie",
        "Horror-movie undead makeover: grey-green skin, dark eye sockets, gloomy vignette.",
        "undead, grey-green",
        "Turn this person into a zombie from a horror film: grey-green desaturated skin, "
        "dark sunken eye sockets, pale eyes, film grain and a dark vignette.",
        Fidelity.HIGH,
    ),
    Style(
        "pop_art",
        "Pop art",
        "Four-panel silkscreen portrait in bold contrasting colour schemes.",
        "2x2 panels, bold colours",
        "Make a pop art silkscreen portrait of this person: a 2x2 grid of panels, each "
        "with flat posterised tones in a different bold contrasting colour scheme.",
        Fidelity.MEDIUM,
    ),
    Style(
        "pixel_art",
        "Pixel art",
        "Retro video game sprite portrait on a coarse pixel grid with a limited palette.",
        "retro 8-bit",
        "Render this person as retro pixel art: a coarse 64 by 64 pixel grid, a limited "
        "retro console palette, crisp square pixels.",
        Fidelity.LOW,
    ),
    Style(
        "animated_3d",
        "3D animated film",
        "Soft, rounded look of a family 3D animated feature with warm studio lighting.",
        "soft 3D, warm light",
        "Restyle this person as a character in a family 3D animated film: smooth "
        "rounded shading, soft warm studio lighting, gently enlarged expressive eyes.",
        Fidelity.MEDIUM,
    ),
    Style(
        "cel_shaded",
        "Cel-shaded",
        "Anime-inspired cel shading: hard-edged shadow bands and crisp outlines.",
        "flat shadow bands",
        "Redraw this person with anime-inspired cel shading: two or three hard-edged "
        "shadow bands, crisp dark outlines, clean flat colours.",
        Fidelity.MEDIUM,
    ),
    Style(
        "watercolor",
        "Watercolour",
        "Loose watercolour painting with soft washes, bleeding edges and paper texture.",
        "soft washes",
        "Paint this person as a loose watercolour portrait: soft translucent washes, "
        "bleeding edges, visible paper texture, light pencil underdrawing.",
        Fidelity.MEDIUM,
    ),
    Style(
        "sketch",
        "Pencil sketch",
        "Graphite pencil portrait with hatching on white paper.",
        "graphite",
        "Draw this person as a graphite pencil sketch on white paper: fine contour "
        "lines and soft hatching, no colour.",
        Fidelity.HIGH,
    ),
    Style(
        "cyberpunk",
        "Cyberpunk",
        "Neon-lit night city look with magenta and cyan rim light.",
        "neon, night city",
        "Restyle this person in a cyberpunk neon look: night city background, strong "
        "magenta and cyan neon rim lighting, high contrast, subtle scanlines.",
        Fidelity.MEDIUM,
    ),
    Style(
        "oil_painting",
        "Oil painting",
        "Classical oil portrait with thick visible brush strokes and warm varnish tones.",
        "brush strokes",
        "Paint this person as a classical oil painting portrait: thick visible brush "
        "strokes, rich warm varnish tones, dark painterly background.",
        Fidelity.HIGH,
    ),
    Style(
        "knight",
        "Medieval knight",
        "Costume portrait as a medieval knight in steel armour, tapestry backdrop.",
        "armour, costume",
        "Portray this person as a medieval knight: polished steel armour and a cloak, "
        "warm torchlight, a castle tapestry behind them, painterly finish.",
        Fidelity.MEDIUM,
    ),
)

_BY_ID = {s.id: s for s in STYLES}


def get_style(style_id: str) -> Style:
    try:
        return _BY_ID[style_id]
    except KeyError:
        raise InvalidRequest(
            "unknown_style",
            f"Unknown style {style_id!r}.",
            allowed=sorted(_BY_ID),
        ) from None


def fidelity_clause(style: Style) -> str:
    return _FIDELITY_CLAUSE[style.fidelity]
