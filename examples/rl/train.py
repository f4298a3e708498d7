"""Evolution strategies on CartPole-v1 with rollout-worker actors, after the Ray
paper's evolution-strategies experiment (Moritz et al., OSDI 2018).

    python examples/rl/train.py                  # train until solved, save the learning curve
    python examples/rl/train.py --workers 4      # more rollout workers
    python examples/rl/train.py --quick          # 5 iterations (what the tests run)
    python examples/rl/train.py --iterations 40  # a fixed amount of work (the scaling table)

The driver holds a linear policy (action = [obs . w + b > 0]). Each iteration it
draws perturbations as offsets into a table of Gaussian noise that every worker got
once, through `put`; rollout workers (actors, each with its own gymnasium
environment) run each perturbation mirrored (theta + sigma*eps and theta -
sigma*eps) and return only the episode returns. The driver takes results as they
arrive with `wait`, hands the worker that finished the next chunk (so a worker with
short episodes takes more), and then steps theta along the rank-weighted sum of the
perturbations. The driver picks every noise offset and environment seed, and sums
results in chunk order, so a run does the same work with any number of workers.

Solved means a mean return of at least 475 (gymnasium's reward_threshold for
CartPole-v1, whose episodes end at 500 steps) over 100 consecutive episodes of the
unperturbed policy.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import zray as ray  # runs unchanged with `import ray`

ENV_ID = "CartPole-v1"
SOLVED_RETURN = 475.0
SOLVED_EPISODES = 100
OBS_DIM = 4
PARAM_DIM = OBS_DIM + 1  # weights and a bias
CALL_TIMEOUT_S = 120.0   # a rollout call that takes longer than this is a hang, not work


def act(theta: np.ndarray, obs: np.ndarray) -> int:
    """The linear policy: push right when obs . w + b > 0."""
    return int(obs @ theta[:OBS_DIM] + theta[OBS_DIM] > 0.0)


@ray.remote
class RolloutWorker:
    """Runs episodes of one environment for given parameter vectors."""

    def __init__(self, noise: np.ndarray, sigma: float) -> None:
        import gymnasium as gym  # imported here: the driver needs only numpy

        self.noise = noise  # the shared table, resolved from its ref once, at creation
        self.sigma = sigma
        self.env = gym.make(ENV_ID)

    def episode(self, theta: np.ndarray, seed: int) -> tuple[float, int]:
        obs, _ = self.env.reset(seed=seed)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, _ = self.env.step(act(theta, obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
        return total, steps

    def rollouts(self, theta: np.ndarray, offsets: list[int], seed: int) -> dict:
        """For each noise offset, one episode at theta + sigma*eps and one at
        theta - sigma*eps (mirrored sampling), both on the same environment seed."""
        returns, steps = [], 0
        for i, offset in enumerate(offsets):
            eps = self.noise[offset:offset + theta.size]
            pair = []
            for sign in (1.0, -1.0):
                ret, n = self.episode(theta + sign * self.sigma * eps, seed + i)
                pair.append(ret)
                steps += n
            returns.append(pair)
        return {"offsets": list(offsets), "returns": returns, "steps": steps}

    def evaluate(self, theta: np.ndarray, seeds: list[int]) -> dict:
        """Episodes of the unperturbed policy."""
        runs = [self.episode(theta, s) for s in seeds]
        return {"returns": [r for r, _ in runs], "steps": sum(n for _, n in runs)}


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Fitness shaping (Salimans et al. 2017): returns replaced by their ranks,
    scaled to [-0.5, 0.5], so one lucky 500 does not dominate a step."""
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[x.ravel().argsort(kind="stable")] = np.arange(x.size)
    return (ranks / (x.size - 1) - 0.5).reshape(x.shape)


class RolloutPool:
    """Keeps every worker busy on a list of calls: each call is given to the next
    worker that finishes, and results come back in the order of the calls."""

    def __init__(self, workers: list) -> None:
        self.workers = workers

    def map(self, calls: list, timeout: float = CALL_TIMEOUT_S) -> list:
        results: list = [None] * len(calls)
        todo = list(enumerate(calls))[::-1]
        pending: dict = {}  # ref -> (call index, worker)
        idle = list(self.workers)
        while todo or pending:
            while todo and idle:
                i, call = todo.pop()
                worker = idle.pop()
                pending[call(worker)] = (i, worker)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
            if not ready:
                raise TimeoutError(f"no rollout finished in {timeout} s")
            i, worker = pending.pop(ready[0])
            results[i] = ray.get(ready[0])
            idle.append(worker)
        return results


class EvolutionStrategies:
    """The driver's side: the policy, the noise table and the update."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        noise = np.random.default_rng(args.seed + 1).standard_normal(args.noise_size, dtype=np.float32)
        self.noise = noise
        noise_ref = ray.put(noise)  # sent once: every worker maps the same copy
        self.pool = RolloutPool([RolloutWorker.remote(noise_ref, args.sigma) for _ in range(args.workers)])
        self.theta = np.zeros(PARAM_DIM)
        self.episodes = 0
        self.steps = 0
        self.next_seed = 0

    def seeds(self, n: int) -> list[int]:
        first, self.next_seed = self.next_seed, self.next_seed + n
        return list(range(first, first + n))

    def iteration(self) -> tuple[float, float]:
        """One ES step; returns the mean return of the perturbed episodes and of the
        evaluation episodes of the policy before the step."""
        a = self.args
        theta_ref = ray.put(self.theta)  # one copy per iteration, shared by every call
        offsets = self.rng.integers(0, a.noise_size - PARAM_DIM, size=a.pairs)
        calls = []
        for start in range(0, a.pairs, a.chunk):
            chunk = [int(o) for o in offsets[start:start + a.chunk]]
            seed = self.seeds(len(chunk))[0]
            calls.append(lambda w, chunk=chunk, seed=seed: w.rollouts.remote(theta_ref, chunk, seed))
        results = self.pool.map(calls + self.evaluation_calls(theta_ref, a.eval_episodes))
        rollouts = [r for r in results if "offsets" in r]
        evals = [ret for r in results if "offsets" not in r for ret in r["returns"]]
        offs = np.array([o for r in rollouts for o in r["offsets"]])
        returns = np.array([pair for r in rollouts for pair in r["returns"]])  # (pairs, 2)
        self.episodes += returns.size + len(evals)
        self.steps += sum(r["steps"] for r in results)
        self.theta = self.theta + a.lr * self.gradient(offs, returns)
        return float(returns.mean()), float(np.mean(evals))

    def gradient(self, offsets: np.ndarray, returns: np.ndarray) -> np.ndarray:
        weights = centered_ranks(returns)
        eps = np.stack([self.noise[o:o + PARAM_DIM] for o in offsets]).astype(np.float64)
        return (weights[:, 0] - weights[:, 1]) @ eps / (len(offsets) * self.args.sigma)

    def evaluation_calls(self, theta_ref: ray.ObjectRef, episodes: int) -> list:
        """Calls that run `episodes` episodes of the unperturbed policy, on fresh seeds."""
        calls = []
        for start in range(0, episodes, self.args.chunk):
            seeds = self.seeds(min(self.args.chunk, episodes - start))
            calls.append(lambda w, seeds=seeds: w.evaluate.remote(theta_ref, seeds))
        return calls

    def test(self, episodes: int = SOLVED_EPISODES) -> float:
        """Mean return of the current policy over `episodes` fresh episodes."""
        results = self.pool.map(self.evaluation_calls(ray.put(self.theta), episodes))
        self.episodes += episodes
        self.steps += sum(r["steps"] for r in results)
        return float(np.mean([ret for r in results for ret in r["returns"]]))


def plot(history: list[dict], path: str) -> None:
    """The learning curve: mean returns by episodes run, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    episodes = [h["episodes"] for h in history]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.plot(episodes, [h["population"] for h in history], label="perturbed policies (mean)")
    ax.plot(episodes, [h["policy"] for h in history], marker="o", ms=3, label="policy (evaluation)")
    tests = [(h["episodes"], h["test"]) for h in history if "test" in h]
    if tests:
        ax.plot(*zip(*tests, strict=True), "k*", ms=10, label=f"test ({SOLVED_EPISODES} episodes)")
    ax.axhline(SOLVED_RETURN, color="grey", ls="--", lw=1, label=f"solved ({SOLVED_RETURN:.0f})")
    ax.set_xlabel("episodes")
    ax.set_ylabel("return")
    ax.set_ylim(0, 520)
    ax.set_title(f"ES on {ENV_ID}")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="rollout-worker actors (default 2)")
    p.add_argument("--pairs", type=int, default=32, help="mirrored perturbations per iteration")
    p.add_argument("--chunk", type=int, default=4, help="perturbations (or eval episodes) per call")
    p.add_argument("--eval-episodes", type=int, default=8, help="policy episodes per iteration")
    p.add_argument("--sigma", type=float, default=0.1, help="noise standard deviation")
    p.add_argument("--lr", type=float, default=0.1, help="step size")
    p.add_argument("--noise-size", type=int, default=4_000_000, help="entries in the noise table")
    p.add_argument("--max-iterations", type=int, default=100, help="give up after this many")
    p.add_argument("--iterations", type=int, default=None,
                   help="run exactly this many iterations, solved or not (no 100-episode test)")
    p.add_argument("--quick", action="store_true", help="--iterations 5 (a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "learning_curve.png"), help="where to save the PNG")
    args = p.parse_args(argv)
    if args.quick:
        args.iterations = 5
    if args.iterations is not None:
        args.max_iterations = args.iterations
    return args


def train(args: argparse.Namespace) -> bool:
    es = EvolutionStrategies(args)
    history: list[dict] = []
    t0 = time.perf_counter()
    solved = False
    for it in range(1, args.max_iterations + 1):
        population, policy = es.iteration()
        dt = time.perf_counter() - t0
        history.append({"episodes": es.episodes, "population": population, "policy": policy})
        print(f"iter {it:3d}  episodes {es.episodes:6d}  mean return {population:6.1f}  "
              f"policy {policy:6.1f}  episodes/s {es.episodes / dt:6.0f}  "
              f"steps/s {es.steps / dt:8.0f}", flush=True)
        if policy >= SOLVED_RETURN and args.iterations is None:
            score = es.test()
            history[-1]["test"] = score
            print(f"test: mean return {score:.1f} over {SOLVED_EPISODES} episodes", flush=True)
            if score >= SOLVED_RETURN:
                solved = True
                break
    dt = time.perf_counter() - t0
    outcome = "solved" if solved else f"ran {it} iterations" if args.iterations else "not solved"
    print(f"{outcome}: {es.episodes} episodes "
          f"({es.steps} steps) in {dt:.1f} s with {args.workers} worker{'s' if args.workers > 1 else ''}: "
          f"{es.episodes / dt:.0f} episodes/s, {es.steps / dt:.0f} steps/s", flush=True)
    plot(history, args.plot)
    print(f"learning curve saved to {args.plot}", flush=True)
    return solved


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    ray.init()
    try:
        solved = train(args)
    finally:
        ray.shutdown()
    print(f"total {time.perf_counter() - t0:.1f} s", flush=True)
    return 0 if solved or args.iterations is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
