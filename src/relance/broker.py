"""The embedded broker: kombu's filesystem transport, with atomic publishing.

kombu writes a message file in place while a consumer may already move and read it, so a
consumer can read an empty file and crash (JSONDecodeError) under load. Here a message is
written to a staging folder and renamed into the queue folder: a rename is atomic, so a
consumer only ever sees complete files.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class AtomicChannel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(self.data_folder_out, ".staging")
        os.makedirs(staging, exist_ok=True)
        temp = os.path.join(staging, name)
        try:
            with open(temp, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(temp, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicChannel
