"""Test settings for the whole suite: Prefect's environment, its test harness (once per session),
the SMTP fixtures, and the `slow` marker.

`pytest -m "not slow"` is the fast loop: everything under tests/system/ and tests/browser/, and any
test that starts Prefect, an SMTP server or a child process, is marked slow here, so no test
file has to remember to.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports prefect: its state in a throwaway folder, no telemetry, a patient start.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="loyalty-prefect-")
atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "CRITICAL"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("LOYALTY_CONFIG", None)

from tests.support.smtp import *  # noqa: E402,F401,F403  (real aiosmtpd servers on loopback)

SLOW_FOLDERS = ("system", "browser")
# Fixtures that start something heavy: Prefect's API, a mail server, a browser, a CLI process.
SLOW_FIXTURES = {"spark", "prefect_harness", "smtp_server", "smtp_tls_server", "chromium", "evaluated", "cli_project"}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).parent
    for item in items:
        folder = Path(item.fspath).relative_to(tests).parts[0]
        if folder in SLOW_FOLDERS or SLOW_FIXTURES & set(item.fixturenames) or item.get_closest_marker("slow"):
            item.add_marker("slow")

@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (it takes ~18 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole session (it takes 12-20 s to start; Java 17, pyspark
    from the lock). Its tests are slow and on one xdist worker (xdist_group "spark")."""
    from loyalty_engine.config import SparkSettings
    from loyalty_engine.spark_engine import start_spark

    session = start_spark(SparkSettings(master="local[1]", conf=SPARK_TEST_CONF), app_name="loyalty-engine-tests")
    yield session
    session.stop()


# Small data, one core: one shuffle partition, no UI, and no code generation, whose compiling of
# the rules' large expressions costs more than it saves on a few thousand rows.
SPARK_TEST_CONF = {
    "spark.driver.memory": "2g",
    "spark.sql.shuffle.partitions": "1",
    "spark.ui.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}
