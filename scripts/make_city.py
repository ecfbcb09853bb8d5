"""Write config/haikou.yaml: 17 stations and 172 outlets at plausible places in Haikou.

Deterministic (seeded), so the file in the repository can be re-made: ``python scripts/make_city.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

DISTRICTS = {  # name: (lon, lat) of the centre, spread in degrees
    "龙华区": ((110.30, 20.01), 0.05),
    "美兰区": ((110.40, 20.02), 0.06),
    "秀英区": ((110.25, 19.99), 0.06),
    "琼山区": ((110.37, 19.95), 0.07),
}
STATION_NAMES = [
    "民旺", "港华", "海燃", "南海", "椰城", "新埠", "长流", "灵山", "三江", "大致坡",
    "龙塘", "石山", "永兴", "东山", "旧州", "红旗", "演丰",
]

ANTISTATIC_ZONES = {
    "discharge_post": [[0.08, 0.35], [0.24, 0.35], [0.24, 0.80], [0.08, 0.80]],
    "filling_area": [[0.55, 0.25], [1.0, 0.25], [1.0, 1.0], [0.55, 1.0]],
}
STORAGE_ZONE = {"storage": [[0.0, 0.35], [1.0, 0.35], [1.0, 1.0], [0.0, 1.0]]}


def main() -> None:
    rnd = random.Random(571)
    sites = []
    dnames = list(DISTRICTS)
    for i, nm in enumerate(STATION_NAMES):
        d = dnames[i % len(dnames)]
        (lon, lat), spread = DISTRICTS[d]
        sid = f"st-{i + 1:02d}"
        guns = [f"g{k}" for k in range(1, rnd.choice([4, 6, 8, 12]) + 1)]
        sites.append({
            "id": sid, "kind": "station", "name": f"海口{nm}液化气充装站", "district": d,
            "location": [round(lon + rnd.uniform(-spread, spread), 5), round(lat + rnd.uniform(-spread, spread), 5)],
            "storage_capacity": rnd.choice([300, 400, 500, 800]),
            "guns": guns,
            "scales": [{"id": f"s{k}", "gun": g} for k, g in enumerate(guns, 1)],
            "cameras": [
                {"id": f"{sid}-entry", "url": f"rtsp://127.0.0.1:8554/{sid}-entry", "name": "入口静电释放",
                 "zones": ANTISTATIC_ZONES, "rules": ["antistatic"]},
                {"id": f"{sid}-fill", "url": f"rtsp://127.0.0.1:8554/{sid}-fill", "name": "充装区"},
                {"id": f"{sid}-store", "url": f"rtsp://127.0.0.1:8554/{sid}-store", "name": "储瓶区",
                 "zones": STORAGE_ZONE, "rules": ["storage"]},
            ],
        })
    for j in range(172):
        d = dnames[j % len(dnames)]
        (lon, lat), spread = DISTRICTS[d]
        oid = f"ol-{j + 1:03d}"
        sites.append({
            "id": oid, "kind": "outlet", "name": f"{d}第{j // 4 + 1}号液化气供应点", "district": d,
            "location": [round(lon + rnd.uniform(-spread, spread), 5), round(lat + rnd.uniform(-spread, spread), 5)],
            "storage_capacity": rnd.choice([20, 30, 40, 50]),
            "cameras": [
                {"id": f"{oid}-store", "url": f"rtsp://127.0.0.1:8554/{oid}-store", "name": "储瓶间",
                 "zones": STORAGE_ZONE, "rules": ["storage"]},
            ],
        })
    cfg = {
        "timezone": "Asia/Shanghai",
        "server": {"host": "127.0.0.1", "port": 8080},
        "database": {"url": "postgresql://postgres@127.0.0.1:5432/monitor"},
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "prefix": "lpg"},
        "detector": {"weights": "models/lpg-sim/best.pt", "classes": {"person": [0], "cylinder": [1]},
                     "imgsz": 640, "backend": "openvino", "confidence": 0.35},
        "sites": sites,
    }
    out = Path(__file__).resolve().parent.parent / "config" / "haikou.yaml"
    header = "# 海口市瓶装液化气智慧监管: 17 stations, 172 outlets. Made by scripts/make_city.py.\n"
    out.write_text(header + yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
