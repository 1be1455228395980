"""The price table: USD per hour, list prices, one dated and editable table.

Edit this file when IBM changes its prices, and update ``AS_OF``. Each GPU profile price covers the
whole server (vCPU, memory and GPUs): IBM folds the GPU into the profile price. ``verified`` says
whether the figure was checked against an IBM catalog source on ``AS_OF``; unverified figures are
estimates to confirm with the IBM Cloud cost estimator (https://cloud.ibm.com/estimator) before
relying on them. Region: us-south, pay-as-you-go; other regions list somewhat higher prices.
"""

from __future__ import annotations

from typing import Any

AS_OF = "2026-12-02"

# profile -> {"usd_per_hour", "verified", "source"}
GPU_PROFILES: dict[str, dict[str, Any]] = {
    "gx2-8x64x1v100": {
        "usd_per_hour": 2.497,
        "verified": True,
        "source": "IBM Global Catalog price in us-south, as copied by SkyPilot's IBM catalog "
        "(skypilot-org/skypilot-catalog, catalogs/v5/ibm/vms.csv)",
    },
    "gx2-16x128x1v100": {
        "usd_per_hour": 2.83,
        "verified": False,
        "source": "estimate: gx2-8x64x1v100 plus 8 vCPU / 64 GB at the balanced-profile rate",
    },
    "gx2-16x128x2v100": {
        "usd_per_hour": 4.99,
        "verified": False,
        "source": "estimate: 2 x gx2-8x64x1v100",
    },
    "gx2-32x256x2v100": {
        "usd_per_hour": 5.66,
        "verified": False,
        "source": "estimate: 2 x gx2-16x128x1v100",
    },
    "gx3-16x80x1l4": {
        "usd_per_hour": 1.8,
        "verified": False,
        "source": "estimate from IBM's announced L4 profile pricing; confirm in the cost estimator",
    },
    "gx3-32x160x2l4": {
        "usd_per_hour": 3.6,
        "verified": False,
        "source": "estimate: 2 x gx3-16x80x1l4",
    },
    "gx3-64x320x4l4": {
        "usd_per_hour": 7.2,
        "verified": False,
        "source": "estimate: 4 x gx3-16x80x1l4",
    },
    "gx3-24x120x1l40s": {
        "usd_per_hour": 2.95,
        "verified": False,
        "source": "estimate from IBM's announced L40S profile pricing; confirm in the cost estimator",
    },
    "gx3-48x240x2l40s": {
        "usd_per_hour": 5.9,
        "verified": False,
        "source": "estimate: 2 x gx3-24x120x1l40s",
    },
    "gx3d-24x120x1a100p": {
        "usd_per_hour": 4.2,
        "verified": False,
        "source": "estimate; confirm in the cost estimator",
    },
    "gx3d-48x240x2a100p": {
        "usd_per_hour": 8.4,
        "verified": False,
        "source": "estimate: 2 x gx3d-24x120x1a100p",
    },
    "gx3d-160x1792x8h100": {
        "usd_per_hour": 85.0,
        "verified": False,
        "source": "estimate from IBM's announced 8 x H100 profile pricing; confirm in the cost estimator",
    },
    "gx3d-160x1792x8h200": {
        "usd_per_hour": 95.0,
        "verified": False,
        "source": "estimate; confirm in the cost estimator",
    },
}

# The other billed resources a run creates: {"value", "verified", "source"}
OTHER: dict[str, dict[str, Any]] = {
    "boot_volume_usd_per_gb_hour": {
        "value": 0.000137,
        "verified": False,
        "source": "estimate: general-purpose block volume, about 0.10 USD per GB-month (730 h)",
    },
    "boot_volume_gb": {
        "value": 100,
        "verified": True,
        "source": "the provider's default boot volume size for stock images (terraform/main.tf sets no size)",
    },
    "floating_ip_usd_per_hour": {
        "value": 0.0068,
        "verified": False,
        "source": "estimate: about 5 USD per floating IP-month (730 h)",
    },
    "public_gateway_usd_per_hour": {
        "value": 0.0685,
        "verified": False,
        "source": "estimate: about 50 USD per public gateway-month (730 h)",
    },
}
