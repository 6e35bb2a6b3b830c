"""Simulator calls per second for VM.get_record over XML-RPC, 1 and 16 clients, and event.from latency."""
from __future__ import annotations

import threading
import time

import XenAPI

from xapisim import SimConfig, Simulator, host_configs

N = 300


def clients_rate(sim, vm: str, n_clients: int) -> float:
    sessions = []
    for _ in range(n_clients):
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", "pw", "2.21", "bench")
        sessions.append(s)

    def work(s):
        for _ in range(N):
            s.xenapi.VM.get_record(vm)
    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return n_clients * N / (time.perf_counter() - t)


def event_latency(sim, vm: str) -> float:
    s = XenAPI.Session(sim.url)
    s.xenapi.login_with_password("root", "pw", "2.21", "bench")
    token = s.xenapi.event_from(["vm"], "", 0.0)["token"]
    samples = []
    for i in range(20):
        t = time.perf_counter()
        s.xenapi.VM.set_name_description(vm, str(i))
        token = s.xenapi.event_from([f"vm/{vm}"], token, 5.0)["token"]
        samples.append(time.perf_counter() - t)
    return sorted(samples)[len(samples) // 2]


def main() -> None:
    with Simulator(SimConfig(password="pw", hosts=host_configs(1), auth_failure_delay=0)) as sim:
        s = XenAPI.Session(sim.url)
        s.xenapi.login_with_password("root", "pw")
        vm = s.xenapi.VM.get_all()[0]
        one = clients_rate(sim, vm, 1)
        many = clients_rate(sim, vm, 16)
        print(f"VM.get_record over XML-RPC, 1 client:   {one:8.0f} calls/s")
        print(f"VM.get_record over XML-RPC, 16 clients: {many:8.0f} calls/s ({many / one:.2f}x)")
        print(f"event.from latency (set -> event, median): {event_latency(sim, vm) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
