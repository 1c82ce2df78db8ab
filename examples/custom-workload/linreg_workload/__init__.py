"""An example workload plugin: federated linear regression on synthetic data.

``LINREG`` is what the entry point ``linreg`` names (see ``pyproject.toml``): the workload
function, its typed server and client configuration, and its version.
"""

from linreg_workload.config import ClientConfig, ServerConfig
from linreg_workload.workload import linreg
from workers.sdk import Workload

__version__ = "0.1.0"

LINREG = Workload(linreg, server_config=ServerConfig, client_config=ClientConfig,
                  version=__version__)

__all__ = ["LINREG", "ClientConfig", "ServerConfig", "linreg"]
