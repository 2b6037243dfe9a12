"""The model repository: registry.py (the served versions, load/unload/reload, atomic swap), versions.py
(one loaded version), loading.py (load one version), model_files.py (model.json and config.json, typed),
storage.py (where the folders live), polling.py (follow changes on disk)."""
