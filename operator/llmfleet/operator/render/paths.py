"""Ports, volume names and mount paths shared by the engine container and its init container.

The root filesystem is read-only; these emptyDirs are the only writable places:
/tmp (scratch, HOME) and the cache (Hugging Face cache, hf:// downloads, compile caches).
"""

HTTP_PORT = 8000
HTTP_PORT_NAME = "http"

TMP_VOLUME = "tmp"
TMP_DIR = "/tmp"

CACHE_VOLUME = "cache"
CACHE_DIR = "/var/cache/llmfleet"
HF_HOME = f"{CACHE_DIR}/huggingface"

MODEL_VOLUME = "model"
PVC_MOUNT = "/models"

API_KEY_VOLUME = "api-key"
API_KEY_DIR = "/var/run/secrets/llmfleet"
API_KEY_FILE = f"{API_KEY_DIR}/api-key"

SHM_VOLUME = "dshm"  # vLLM's workers share tensors through /dev/shm

# The drain token (a per-LLMService Secret, see render/drain_token.py): only the engine, its
# preStop hook and the operator hold it. Its own directory: the API-key volume may be absent.
DRAIN_TOKEN_VOLUME = "drain-token"
DRAIN_TOKEN_DIR = "/var/run/secrets/llmfleet-drain"
DRAIN_TOKEN_KEY = "token"
DRAIN_TOKEN_FILE = f"{DRAIN_TOKEN_DIR}/{DRAIN_TOKEN_KEY}"
