# Ray docs: Ray Generators, "Generator from Actor Tasks" and "Using the Ray generator with
#   asyncio" -- https://docs.ray.io/en/latest/ray-core/ray-generator.html
# An async actor's generator method awaits between items; the driver consumes it with
# async for while the actor keeps serving other calls.
# Expected output:
# | ['a', 'b', 'c']
# | 3
import asyncio

import sluice as ray


@ray.remote
class Streamer:
    def __init__(self):
        self.calls = 0

    async def stream(self, words):
        for word in words:
            await asyncio.sleep(0)
            self.calls += 1
            yield word

    async def count(self):
        return self.calls


async def main():
    streamer = Streamer.remote()
    words = []
    async for ref in streamer.stream.remote(["a", "b", "c"]):
        words.append(await ref)
    print(words)
    print(await streamer.count.remote())


asyncio.run(main())
