"""A fixed city map: 263 taxi zones (TLC numbering), their borough and a centroid in miles."""

from __future__ import annotations

from functools import cache

import numpy as np

N_ZONES = 263
BOROUGHS = ("EWR", "Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island")
# TLC zone ids of the airports: Newark, JFK, LaGuardia.
NEWARK, JFK, LAGUARDIA = 1, 132, 138
AIRPORTS = (NEWARK, JFK, LAGUARDIA)

# Borough centres (miles, arbitrary origin) and spread of their zones.
_CENTRES = {
    "EWR": (-14.0, -2.0, 0.3),
    "Manhattan": (0.0, 0.0, 2.5),
    "Brooklyn": (3.0, -6.0, 3.5),
    "Queens": (8.0, -1.0, 4.0),
    "Bronx": (3.0, 8.0, 3.0),
    "Staten Island": (-6.0, -12.0, 3.0),
}


@cache
def zone_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (borough index, x, y) arrays indexed by zone id (index 0 unused).

    The map is fixed (its own seed), so the relationship between zones and fares is the same
    whatever seed the trips are generated with.
    """
    rng = np.random.default_rng(20240101)
    weights = np.array([0.0, 0.30, 0.25, 0.25, 0.15, 0.05])
    borough = rng.choice(len(BOROUGHS), size=N_ZONES + 1, p=weights / weights.sum())
    borough[0] = 0
    borough[NEWARK] = BOROUGHS.index("EWR")
    borough[JFK] = borough[LAGUARDIA] = BOROUGHS.index("Queens")
    x = np.empty(N_ZONES + 1)
    y = np.empty(N_ZONES + 1)
    for index, name in enumerate(BOROUGHS):
        cx, cy, spread = _CENTRES[name]
        members = borough == index
        x[members] = cx + rng.normal(0, spread, members.sum())
        y[members] = cy + rng.normal(0, spread, members.sum())
    x[JFK], y[JFK] = 12.0, -6.0
    x[LAGUARDIA], y[LAGUARDIA] = 6.0, 2.0
    return borough, x, y


def borough_names(zone_ids: np.ndarray) -> np.ndarray:
    """Return the borough name of each zone id."""
    borough, _, _ = zone_table()
    return np.asarray(BOROUGHS, dtype=object)[borough[zone_ids]]
