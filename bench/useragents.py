"""Realistic, distinct browser User-Agent strings for the benchmarks (no bots).

The mix leans the way job-ad traffic does in Norway: about 60 % phones
(iOS Safari first, then Chrome and Samsung Internet on Android), 35 % desktop
(Chrome, Edge, Safari, Firefox) and 5 % tablets. Distinctness comes from what
varies in real traffic: full browser versions (Chrome before the UA
reduction, Edge, WebView, Chrome on iOS), OS versions and Android device
models. ``generate(n, seed)`` is deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# fmt: off
# Chrome major → its build number (the third field), roughly: 100 → 4896, 120 → 6099, 131 → 6778.
_CHROME_BUILDS = {
    100: 4896, 101: 4951, 102: 5005, 103: 5060, 104: 5112, 105: 5195, 106: 5249, 107: 5304, 108: 5359,
    109: 5414, 110: 5481, 111: 5563, 112: 5615, 113: 5672, 114: 5735, 115: 5790, 116: 5845, 117: 5938,
    118: 5993, 119: 6045, 120: 6099, 121: 6167, 122: 6261, 123: 6312, 124: 6367, 125: 6422, 126: 6478,
    127: 6533, 128: 6613, 129: 6668, 130: 6723, 131: 6778, 132: 6834, 133: 6943, 134: 6998,
}
# Edge build per Chrome major, roughly (Edge 120 → 2210, 124 → 2478, 131 → 2903).
_EDGE_BUILDS = {m: 1185 + (m - 100) * 55 for m in _CHROME_BUILDS}

_ANDROID_PHONES = [
    # Samsung
    "SM-G991B", "SM-G996B", "SM-G998B", "SM-S901B", "SM-S906B", "SM-S908B", "SM-S911B", "SM-S916B",
    "SM-S918B", "SM-S921B", "SM-S926B", "SM-S928B", "SM-A515F", "SM-A526B", "SM-A536B", "SM-A546B",
    "SM-A556B", "SM-A336B", "SM-A346B", "SM-A137F", "SM-A145R", "SM-A156B", "SM-A256B", "SM-G781B",
    "SM-G780G", "SM-F711B", "SM-F721B", "SM-F731B", "SM-F936B", "SM-F946B", "SM-M236B", "SM-A226B",
    # Google
    "Pixel 5", "Pixel 6", "Pixel 6a", "Pixel 6 Pro", "Pixel 7", "Pixel 7a", "Pixel 7 Pro", "Pixel 8",
    "Pixel 8a", "Pixel 8 Pro", "Pixel 9", "Pixel 9 Pro",
    # Xiaomi / Redmi / POCO
    "M2101K6G", "M2102J20SG", "2201117TY", "2201116SG", "22101316UG", "23021RAAEG", "23049PCD8G",
    "2211133G", "23078PND5G", "Redmi Note 8 Pro", "Redmi Note 9 Pro", "POCO F3", "Mi 9T",
    # OnePlus / OPPO / realme / vivo
    "ONEPLUS A6013", "GM1913", "HD1913", "IN2013", "LE2113", "NE2213", "CPH2449", "CPH2451", "CPH2581",
    "CPH2305", "CPH2211", "CPH2375", "RMX3363", "RMX3630", "V2111", "V2202", "V2250",
    # Motorola / Nokia / Sony / Huawei / Honor / Fairphone
    "moto g(60)", "moto g(84) 5G", "moto g54 5G", "motorola edge 30", "motorola edge 40",
    "Nokia G21", "Nokia X20", "Nokia G42 5G", "XQ-BC52", "XQ-CC54", "XQ-DQ54", "ELS-NX9", "VOG-L29",
    "ANY-LX1", "CRT-NX1", "FP4", "FP5",
]
_ANDROID_TABLETS = [
    "SM-X200", "SM-X205", "SM-X110", "SM-T220", "SM-T505", "SM-X700", "SM-X710", "SM-X810", "SM-P610",
    "Lenovo TB-X606F", "Lenovo TB-J606F", "Lenovo TB328FU", "21051182G", "23043RP34G", "Pixel Tablet",
]
_ANDROID_VERSIONS = ["9", "10", "11", "12", "13", "14", "15"]
_IOS_VERSIONS = [
    "15_7", "15_8", "16_0", "16_1_1", "16_2", "16_3_1", "16_4_1", "16_5", "16_6", "16_6_1", "16_7_2",
    "16_7_8", "17_0_3", "17_1_1", "17_1_2", "17_2", "17_2_1", "17_3", "17_3_1", "17_4", "17_4_1", "17_5",
    "17_5_1", "17_6", "17_6_1", "18_0", "18_0_1", "18_1", "18_1_1", "18_2", "18_2_1", "18_3", "18_3_1",
]
# iOS build ids of Mobile/… (WebKit keeps 15E148 for most releases; some apps report the real build).
_IOS_MOBILE = ["15E148", "15E148", "15E148", "15E148", "21E236", "21F90", "20H115", "22B91"]
_MAC_VERSIONS = ["10_15_7", "10_15_6", "10_14_6", "11_7_10", "12_7_4", "13_6_6", "14_4_1", "14_5", "14_6_1"]
_SAFARI_MAC = ["15.6.1", "16.1", "16.3", "16.5.2", "16.6", "17.0", "17.1.2", "17.2.1", "17.3.1", "17.4",
               "17.4.1", "17.5", "17.6", "18.0", "18.0.1", "18.1", "18.1.1", "18.2", "18.3"]
_WINDOWS = ["Windows NT 10.0; Win64; x64", "Windows NT 10.0; Win64; x64", "Windows NT 10.0; Win64; x64",
            "Windows NT 10.0; WOW64", "Windows NT 6.1; Win64; x64", "Windows NT 6.3; Win64; x64"]
_LINUX = ["X11; Linux x86_64", "X11; Ubuntu; Linux x86_64", "X11; Fedora; Linux x86_64"]
_CROS = ["X11; CrOS x86_64 15662.76.0", "X11; CrOS x86_64 15786.48.0", "X11; CrOS x86_64 15917.71.0",
         "X11; CrOS x86_64 16002.44.0", "X11; CrOS x86_64 14541.0.0", "X11; CrOS aarch64 15917.71.0"]
_SAMSUNG_BROWSER = {  # Samsung Internet major → the Chrome major it is built on
    "19.0": 102, "20.0": 106, "21.0": 110, "22.0": 111, "23.0": 115, "24.0": 117, "25.0": 121,
    "26.0": 122, "27.0": 125,
}

# fmt: on

_WEBKIT_DESKTOP = "AppleWebKit/537.36 (KHTML, like Gecko)"
_WEBKIT_IOS = "AppleWebKit/605.1.15 (KHTML, like Gecko)"


def _chrome_version(r: random.Random, lo: int = 100, reduced: float = 0.0) -> tuple[int, str]:
    major = r.randint(lo, max(_CHROME_BUILDS))
    if r.random() < reduced:  # the reduced User-Agent: Chrome/124.0.0.0
        return major, f"{major}.0.0.0"
    return major, f"{major}.0.{_CHROME_BUILDS[major] + r.randint(0, 60)}.{r.randint(0, 230)}"


def _ios(r: random.Random) -> tuple[str, str]:
    """(CPU … OS token version, Safari Version/ value)."""
    v = r.choice(_IOS_VERSIONS)
    parts = v.split("_")
    return v, ".".join(parts[:2]) if len(parts) > 2 and r.random() < 0.5 else ".".join(parts)


def chrome_windows(r: random.Random) -> str:
    _, v = _chrome_version(r, reduced=0.3)
    return f"Mozilla/5.0 ({r.choice(_WINDOWS)}) {_WEBKIT_DESKTOP} Chrome/{v} Safari/537.36"


def chrome_mac(r: random.Random) -> str:
    _, v = _chrome_version(r, reduced=0.3)
    mac = r.choice(_MAC_VERSIONS)
    return f"Mozilla/5.0 (Macintosh; Intel Mac OS X {mac}) {_WEBKIT_DESKTOP} Chrome/{v} Safari/537.36"


def chrome_linux(r: random.Random) -> str:
    _, v = _chrome_version(r, reduced=0.3)
    plat = r.choice(_CROS) if r.random() < 0.5 else "X11; Linux x86_64"
    return f"Mozilla/5.0 ({plat}) {_WEBKIT_DESKTOP} Chrome/{v} Safari/537.36"


def edge_desktop(r: random.Random) -> str:
    major, v = _chrome_version(r, lo=110, reduced=0.6)
    edg = f"{major}.0.{_EDGE_BUILDS[major] + r.randint(0, 50)}.{r.randint(0, 120)}"
    plat = r.choice(_WINDOWS) if r.random() < 0.9 else f"Macintosh; Intel Mac OS X {r.choice(_MAC_VERSIONS)}"
    return f"Mozilla/5.0 ({plat}) {_WEBKIT_DESKTOP} Chrome/{v} Safari/537.36 Edg/{edg}"


def firefox_desktop(r: random.Random) -> str:
    major = r.randint(102, 134)
    minor = r.choice(["0", "0", "0", "0.1", "0.2", "0.3", "1"]) if major > 110 else "0"
    plat = r.choice(
        [
            r.choice(_WINDOWS),
            r.choice(_WINDOWS),
            f"Macintosh; Intel Mac OS X {r.randint(10, 14)}.{r.randint(0, 15)}",
        ]
        + _LINUX
    )
    if major in (102, 115, 128) and r.random() < 0.5:  # ESR
        minor = f"{r.randint(1, 15)}.0"
    return f"Mozilla/5.0 ({plat}; rv:{major}.0) Gecko/20100101 Firefox/{major}.{minor}"


def safari_mac(r: random.Random) -> str:
    return (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X {r.choice(_MAC_VERSIONS)}) {_WEBKIT_IOS} "
        f"Version/{r.choice(_SAFARI_MAC)} Safari/605.1.15"
    )


def safari_iphone(r: random.Random) -> str:
    os_v, ver = _ios(r)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_v} like Mac OS X) {_WEBKIT_IOS} "
        f"Version/{ver} Mobile/{r.choice(_IOS_MOBILE)} Safari/604.1"
    )


def chrome_iphone(r: random.Random) -> str:
    os_v, _ = _ios(r)
    _, v = _chrome_version(r, lo=110)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_v} like Mac OS X) {_WEBKIT_IOS} "
        f"CriOS/{v} Mobile/15E148 Safari/604.1"
    )


def firefox_iphone(r: random.Random) -> str:
    os_v, _ = _ios(r)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_v} like Mac OS X) {_WEBKIT_IOS} "
        f"FxiOS/{r.randint(110, 134)}.{r.randint(0, 3)} Mobile/15E148 Safari/605.1.15"
    )


def edge_iphone(r: random.Random) -> str:
    os_v, ver = _ios(r)
    major = r.randint(115, 131)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_v} like Mac OS X) {_WEBKIT_IOS} "
        f"Version/{ver} EdgiOS/{major}.0.{_EDGE_BUILDS[major] + r.randint(0, 50)}.{r.randint(50, 99)} "
        "Mobile/15E148 Safari/605.1.15"
    )


def facebook_iphone(r: random.Random) -> str:
    """Job ads are shared on Facebook: its in-app browser on iOS."""
    os_v, _ = _ios(r)
    ver = f"{r.randint(430, 490)}.0.0.{r.randint(20, 60)}.{r.randint(100, 120)}"
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {os_v} like Mac OS X) {_WEBKIT_IOS} Mobile/21E236 "
        f"[FBAN/FBIOS;FBAV/{ver};FBBV/{r.randint(550000000, 650000000)};FBDV/iPhone{r.randint(11, 17)},"
        f"{r.randint(1, 8)};FBMD/iPhone;FBSN/iOS;FBSV/{os_v.replace('_', '.')};FBSS/3;FBCR/;FBID/phone;"
        "FBLC/nb_NO;FBOP/80]"
    )


def safari_ipad(r: random.Random) -> str:
    os_v, ver = _ios(r)
    return (
        f"Mozilla/5.0 (iPad; CPU OS {os_v} like Mac OS X) {_WEBKIT_IOS} "
        f"Version/{ver} Mobile/15E148 Safari/604.1"
    )


def _android(r: random.Random) -> str:
    return r.choice(_ANDROID_VERSIONS[1:] if r.random() < 0.9 else _ANDROID_VERSIONS)


def chrome_android(r: random.Random) -> str:
    _, v = _chrome_version(r, lo=105, reduced=0.35)
    if r.random() < 0.25:  # the reduced User-Agent hides the model: "Android 10; K"
        return f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT_DESKTOP} Chrome/{v} Mobile Safari/537.36"
    device = r.choice(_ANDROID_PHONES)
    prefix = r.choice(["TP1A", "UP1A", "AP2A", "SP1A", "RKQ1"])
    build = f" Build/{prefix}.{r.randint(220101, 240905)}.0{r.randint(1, 30):02d}"
    tail = build if r.random() < 0.15 else ""
    return (
        f"Mozilla/5.0 (Linux; Android {_android(r)}; {device}{tail}) {_WEBKIT_DESKTOP} "
        f"Chrome/{v} Mobile Safari/537.36"
    )


def webview_android(r: random.Random) -> str:
    """Android WebView inside apps (LinkedIn, Finn, mail apps): full versions, ``wv``."""
    _, v = _chrome_version(r, lo=110)
    return (
        f"Mozilla/5.0 (Linux; Android {_android(r)}; {r.choice(_ANDROID_PHONES)}; wv) {_WEBKIT_DESKTOP} "
        f"Version/4.0 Chrome/{v} Mobile Safari/537.36"
    )


def samsung_android(r: random.Random, tablet: bool = False) -> str:
    sb, chrome = r.choice(list(_SAMSUNG_BROWSER.items()))
    device = r.choice(_ANDROID_TABLETS[:9]) if tablet else r.choice(_ANDROID_PHONES[:32])
    if r.random() < 0.3:
        sb = f"{sb[:-2]}.{r.randint(1, 6)}"
    mobile = "" if tablet else "Mobile "
    return (
        f"Mozilla/5.0 (Linux; Android {_android(r)}; {device}) {_WEBKIT_DESKTOP} SamsungBrowser/{sb} "
        f"Chrome/{chrome}.0.0.0 {mobile}Safari/537.36"
    )


def firefox_android(r: random.Random) -> str:
    major = r.randint(110, 134)
    return f"Mozilla/5.0 (Android {_android(r)}; Mobile; rv:{major}.0) Gecko/{major}.0 Firefox/{major}.0"


def edge_android(r: random.Random) -> str:
    major, v = _chrome_version(r, lo=115, reduced=1.0)
    edg = f"{major}.0.{_EDGE_BUILDS[major] + r.randint(0, 50)}.{r.randint(50, 99)}"
    return (
        f"Mozilla/5.0 (Linux; Android {_android(r)}; {r.choice(_ANDROID_PHONES)}) {_WEBKIT_DESKTOP} "
        f"Chrome/{v} Mobile Safari/537.36 EdgA/{edg}"
    )


def chrome_android_tablet(r: random.Random) -> str:
    _, v = _chrome_version(r, lo=105, reduced=0.35)
    return (
        f"Mozilla/5.0 (Linux; Android {_android(r)}; {r.choice(_ANDROID_TABLETS)}) {_WEBKIT_DESKTOP} "
        f"Chrome/{v} Safari/537.36"
    )


# (weight, device class, generator)
FAMILIES: list[tuple[float, str, Callable[[random.Random], str]]] = [
    (24.0, "mobile", safari_iphone),
    (13.0, "mobile", chrome_android),
    (6.0, "mobile", samsung_android),
    (4.0, "mobile", chrome_iphone),
    (4.0, "mobile", webview_android),
    (3.0, "mobile", facebook_iphone),
    (1.5, "mobile", firefox_android),
    (1.0, "mobile", edge_android),
    (1.0, "mobile", firefox_iphone),
    (1.0, "mobile", edge_iphone),
    (14.0, "desktop", chrome_windows),
    (7.0, "desktop", edge_desktop),
    (4.0, "desktop", chrome_mac),
    (4.0, "desktop", safari_mac),
    (4.0, "desktop", firefox_desktop),
    (1.5, "desktop", chrome_linux),
    (3.0, "tablet", safari_ipad),
    (1.5, "tablet", chrome_android_tablet),
    (1.0, "tablet", lambda r: samsung_android(r, tablet=True)),
]


def generate(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct User-Agents drawn from :data:`FAMILIES` by weight, in drawing order."""
    r = random.Random(seed)
    weights = [w for w, _, _ in FAMILIES]
    seen: set[str] = set()
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > n * 50:
            raise RuntimeError(f"could only make {len(out)} distinct User-Agents")
        _, _, fn = r.choices(FAMILIES, weights)[0]
        ua = fn(r)
        if ua not in seen:
            seen.add(ua)
            out.append(ua)
    return out


if __name__ == "__main__":
    import sys

    for ua in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
        print(ua)
