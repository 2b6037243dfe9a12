"""The model repository: registry.py (the served versions, load/unload/reload, atomic swap), versions.py
(one loaded version), loading.py (load one version), model_files.py (model.json and config.json, typed),
storage.py (where the folders live: a local folder), s3.py (an S3 bucket fetched into a local cache),
download.py (open the storage a URI names), polling.py (follow changes on disk or in the bucket)."""
