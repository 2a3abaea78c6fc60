"""The anchor for publishing: what a bare nostr-sdk script does, and nothing more.

    python bench/bare_nostr.py KEYFILE RELAY TEXT [COUNT [AT_ONCE]]

imports nostr-sdk, connects to RELAY, signs COUNT notes (default 1) with TEXT and sends them,
AT_ONCE at a time, waiting for each OK; exit 1 if any was refused.
"""

import asyncio
import sys

import nostr_sdk as sdk


async def main(keyfile: str, relay: str, text: str, count: int = 1, at_once: int = 1) -> int:
    keys = sdk.Keys.parse(open(keyfile).read().strip())  # noqa: PTH123, SIM115
    client = sdk.Client()
    await client.add_relay(sdk.RelayUrl.parse(relay))
    await client.connect()
    gate = asyncio.Semaphore(at_once)

    async def send(i: int) -> bool:
        async with gate:
            note = sdk.EventBuilder(sdk.Kind(1), f"{text} {i}" if count > 1 else text)
            return bool((await client.send_event(note.finalize(keys))).success)

    sent = await asyncio.gather(*(send(i) for i in range(count)))
    await client.shutdown()
    return 0 if all(sent) else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(asyncio.run(main(*args[:3], *(int(a) for a in args[3:]))))
