# Ray docs: Actors, "Passing around actor handles" (to other actors) --
#   https://docs.ray.io/en/latest/ray-core/actors.html
# Expected output:
# | ['ping from worker 0', 'ping from worker 1']
import sluice as ray


@ray.remote
class Logger:
    def __init__(self):
        self.messages = []

    def log(self, message):
        self.messages.append(message)

    def get_messages(self):
        return sorted(self.messages)


@ray.remote
class Worker:
    def __init__(self, index, logger):
        self.index = index
        self.logger = logger

    def work(self):
        return ray.get(self.logger.log.remote(f"ping from worker {self.index}"))


logger = Logger.remote()
workers = [Worker.remote(i, logger) for i in range(2)]
ray.get([w.work.remote() for w in workers])
print(ray.get(logger.get_messages.remote()))
