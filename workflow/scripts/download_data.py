from kdtransfer.io.runlog import log_to

log = log_to(snakemake.log[0])

import json
from pathlib import Path

from kdtransfer.data.download import download

# The data goes beside the marker: resources/data, where the loaders look by default.
marker = Path(snakemake.output[0])
info = download(snakemake.wildcards.name, marker.parent)
log.info("downloaded %s: %s", snakemake.wildcards.name, info)
marker.write_text(json.dumps(info, indent=2) + "\n")
