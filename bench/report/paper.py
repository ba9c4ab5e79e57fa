"""Figures published in the Deformable VisTR poster, shown only as rows marked "reported in paper".

All entries use ResNet-50 on YouTube-VIS 2019 (mAP in %). They are never averaged with, sorted
among or plotted as measured results; the tables print them in separate, marked rows.
"""

SOURCE = "Deformable VisTR poster; ResNet-50, YouTube-VIS 2019"
SETTING = "ResNet-50, YouTube-VIS 2019"

# Poster tables 4 and 5: complexity, training time (GPU-hours, total), epochs (total), FPS, AP.
METHODS = [
    {
        "method": "VisTR",
        "backend": "full",
        "fps": "30.0",
        "device_hours": "1000 GPU-h",
        "epochs": "~500",
        "AP": "35.6",
    },
    {
        "method": "Deformable VisTR",
        "backend": "stdeform",
        "fps": "33.0",
        "device_hours": "120 GPU-h",
        "epochs": "50",
        "AP": "34.6",
    },
]

# Poster table 6: ablation over K (sampling points per query).
K_ABLATION = [
    {"backbone": "ResNet-50", "K": 16, "AP": "33.8"},
    {"backbone": "ResNet-50", "K": 32, "AP": "34.6"},
]
