"""Message catalogs for the block pages and portal chrome, chosen by Accept-Language.

Adding a language means adding one dict to ``CATALOGS`` with the same keys as English;
a missing key falls back to English, so a partial translation is safe to ship.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Translator = Callable[..., str]

ENGLISH: dict[str, str] = {
    "site.tagline": "The internet filter that can be seen through.",
    "nav.search": "Search",
    "nav.orders": "Orders",
    "nav.jurisdictions": "Jurisdictions",
    "nav.stats": "Statistics",
    "nav.log": "Public log",
    "nav.appeals": "Appeals",
    "nav.requests": "Requests",
    "nav.api": "API",
    "block.451.title": "Unavailable for legal reasons",
    "block.451.headline": "{name} is blocked by order of {authority}",
    "block.451.lead": (
        "This network shows you this page instead of the site you asked for, because a "
        "legal order requires it. Here is what the order says and how to contest it."
    ),
    "block.403.title": "Blocked for your security",
    "block.403.headline": "{name} is blocked for your security",
    "block.403.lead": (
        "It is listed as {category}. The operator, {operator}, blocks it on this network "
        "to protect you and your device. Nobody is tracking you."
    ),
    "block.who": "Who ordered it",
    "block.why": "Legal basis",
    "block.reference": "Reference",
    "block.since": "In force since",
    "block.until": "Until",
    "block.until.none": "no end date set",
    "block.category": "Category",
    "block.order": "Full order and its public log entry",
    "block.appeal.title": "Think this is wrong?",
    "block.appeal.text": (
        "Anyone may appeal. The appeal and its decision are published on the public log."
    ),
    "block.appeal.button": "File an appeal",
    "block.notblocked.title": "Not blocked",
    "block.notblocked.text": "{name} is not blocked on this network.",
    "block.footer": (
        "Every block on this network is published with its legal basis. "
        "You can check the full policy at {portal}."
    ),
}

FRENCH: dict[str, str] = {
    "nav.search": "Recherche",
    "nav.orders": "Décisions",
    "nav.jurisdictions": "Juridictions",
    "nav.stats": "Statistiques",
    "nav.log": "Journal public",
    "nav.appeals": "Recours",
    "nav.requests": "Demandes",
    "block.451.title": "Indisponible pour raisons légales",
    "block.451.headline": "{name} est bloqué sur décision de {authority}",
    "block.451.lead": (
        "Ce réseau affiche cette page à la place du site demandé, parce qu'une décision "
        "légale l'impose. Voici ce que dit la décision et comment la contester."
    ),
    "block.403.title": "Bloqué pour votre sécurité",
    "block.403.headline": "{name} est bloqué pour votre sécurité",
    "block.403.lead": (
        "Il figure sur une liste de type {category}. L'opérateur, {operator}, le bloque sur "
        "ce réseau pour vous protéger, vous et votre appareil. Personne ne vous suit."
    ),
    "block.who": "Ordonné par",
    "block.why": "Base légale",
    "block.reference": "Référence",
    "block.since": "En vigueur depuis",
    "block.until": "Jusqu'au",
    "block.until.none": "aucune date de fin",
    "block.category": "Catégorie",
    "block.order": "La décision complète et son entrée au journal public",
    "block.appeal.title": "Vous pensez que c'est une erreur ?",
    "block.appeal.text": (
        "Tout le monde peut former un recours. Le recours et sa décision sont publiés au "
        "journal public."
    ),
    "block.appeal.button": "Former un recours",
    "block.notblocked.title": "Non bloqué",
    "block.notblocked.text": "{name} n'est pas bloqué sur ce réseau.",
    "block.footer": (
        "Chaque blocage sur ce réseau est publié avec sa base légale. La politique complète "
        "est consultable sur {portal}."
    ),
}

CATALOGS: dict[str, Mapping[str, str]] = {"en": ENGLISH, "fr": FRENCH}
DEFAULT_LANGUAGE = "en"


def negotiate(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """Pick the best catalog for an ``Accept-Language`` header (RFC 9110 section 12.5.4)."""
    if default not in CATALOGS:
        default = DEFAULT_LANGUAGE
    if not accept_language:
        return default
    choices: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")[:20]):
        lang, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        choices.append((-quality, position, lang.strip().lower()))
    for negative_q, _, lang in sorted(choices):
        if negative_q >= 0:
            break
        for candidate in (lang, lang.split("-")[0]):
            if candidate in CATALOGS:
                return candidate
    return default


def translator(language: str) -> Translator:
    """A function ``t(key, **values)`` for one language, falling back to English."""
    catalog = CATALOGS.get(language, ENGLISH)

    def t(key: str, **values: object) -> str:
        text = catalog.get(key) or ENGLISH.get(key, key)
        return text.format(**values) if values else text

    return t
