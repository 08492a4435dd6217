# Ray docs: AsyncIO for Actors -- https://docs.ray.io/en/latest/ray-core/actors/async_api.html
# An actor with async methods runs them concurrently on one event loop.
# Expected output:
# | started
# | ['released', 'waited']
import asyncio

import sluice as ray


@ray.remote
class AsyncActor:
    def __init__(self):
        self.event = asyncio.Event()
        self.started = asyncio.Event()

    async def wait_for_release(self):
        self.started.set()
        await self.event.wait()
        return "waited"

    async def release(self):
        await self.started.wait()
        self.event.set()
        return "released"

    async def is_started(self):
        return "started"


actor = AsyncActor.remote()
waiting = actor.wait_for_release.remote()
print(ray.get(actor.is_started.remote()))
print(sorted(ray.get([waiting, actor.release.remote()])))


# ray.get on an ObjectRef can be awaited in async code.
async def main():
    return await actor.is_started.remote()


assert asyncio.run(main()) == "started"
