"""`ray-macaw train` and `ray-macaw evaluate`: meta-training and held-out evaluation commands."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

from ray_macaw.errors import ArgumentError
from ray_macaw.runtime.ray_setup import check_resources, ensure_ray


def environment_of(config: Any) -> dict[str, Any]:
    """The family's environment record (model, Meta-World and reward versions, options), so
    results say which environments produced them."""
    from ray_macaw.tasks import get_task_family

    return get_task_family(config.family, seed=config.family_seed).environment()


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Refuse a given option below 1 (0 episodes, -1 steps...) before anything starts."""
    for name in names:
        value = getattr(args, name)
        if value is not None and not value > 0:
            flag = "--" + name.replace("_", "-")
            raise ArgumentError(f"{flag} must be positive, got {value}", f"give e.g. {flag} 1")


def cmd_train(args: argparse.Namespace) -> None:
    """`ray-macaw train CONFIG.yaml [--stop-steps N] [--out DIR] [--resume] [--address ADDR]`."""
    from ray_macaw.training.run_file import load_run_file
    from ray_macaw.training.train import check_output, train

    config, options = load_run_file(args.config)
    if args.stop_steps is not None:
        options = replace(options, stop_meta_steps=args.stop_steps)
    if args.out is not None:
        options = replace(options, out=args.out)
    config.validate()  # fix-it errors before starting Ray
    check_output(options.out, args.resume)
    args.interrupt_hint = (
        f"the last checkpoint ({options.out}/latest) and the metrics log up to it are kept; "
        f"continue with: ray-macaw train {args.config} --resume"
        + (f" --out {args.out}" if args.out else "")
    )
    ensure_ray(args.address)
    summary = train(config, options, resume=args.resume)
    if args.json:
        print(json.dumps(summary, indent=2))


def cmd_evaluate(args: argparse.Namespace) -> None:
    """`ray-macaw evaluate CKPT [--episodes N] [--adaptation-steps K] [--json]`."""
    from ray_macaw.algorithms.common.checkpoints import open_checkpoint

    check_positive(args, "episodes", "adaptation_steps")
    ensure_ray(args.address)
    algo: Any = open_checkpoint(args.checkpoint)
    try:
        result = algo.evaluate_held_out(args.episodes, args.adaptation_steps)
    finally:
        algo.stop()
    result = {
        "checkpoint": args.checkpoint,
        "meta_steps": algo.num_meta_steps,
        "environment": environment_of(algo.config),
        **result,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{'task':>5} {'pre-adaptation':>15} {'post-adaptation':>16}")
    for task_id, task in result["per_task"].items():
        print(
            f"{task_id:>5} {task['pre_adaptation_return']:>15.2f} "
            f"{task['post_adaptation_return']:>16.2f}"
        )
    print(
        f"{'mean':>5} {result['pre_adaptation_return_mean']:>15.2f} "
        f"{result['post_adaptation_return_mean']:>16.2f}"
    )


def cmd_finetune(args: argparse.Namespace) -> None:
    """`ray-macaw finetune CKPT [--budgets 20000,200000] [...] [--json]` (appendix C.2)."""
    from ray_macaw.algorithms.common.checkpoints import open_checkpoint
    from ray_macaw.evaluation.finetune import FineTuneConfig, finetune

    check_positive(args, "batch_size", "episodes", "num_cpus_per_task")
    try:
        budgets = tuple(int(b) for b in args.budgets.split(","))
    except ValueError:
        raise ArgumentError(
            f"cannot read budgets '{args.budgets}'", "give step counts like 20000,200000"
        ) from None
    if not budgets or min(budgets) < 1:
        raise ArgumentError(
            f"budgets must be positive step counts, got '{args.budgets}'",
            "give step counts like --budgets 20000,200000",
        )
    given = {
        "value_steps": args.value_steps,
        "policy_steps": args.policy_steps,
        "burn_in_rounds": args.burn_in_rounds,
        "batch_size": args.batch_size,
        "eval_episodes": args.episodes,
    }
    settings = {k: v for k, v in given.items() if v is not None}
    if args.fifo_size is not None:
        settings["fifo_size"] = args.fifo_size or None  # 0: keep every transition
    try:
        config = FineTuneConfig.preset(
            args.preset, budgets=budgets, num_cpus_per_task=args.num_cpus_per_task, **settings
        )
    except ValueError as e:  # FineTuneConfig's own checks
        raise ArgumentError(f"impossible fine-tuning settings ({e})", "fix the option") from None
    ensure_ray(args.address)
    check_resources(
        "each held-out task's fine-tuning actor",
        [{"CPU": args.num_cpus_per_task}],
        "lower --num-cpus-per-task to what one node has",
    )
    algo: Any = open_checkpoint(args.checkpoint)
    try:
        summary = finetune(algo, config)
    finally:
        algo.stop()
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(
        f"{'extra env steps':>16} {'mean return':>12} {'+- s.e.':>8} {'improvement':>12} "
        f"{'+- s.e.':>8}"
    )
    for row in summary["table"]:
        print(
            f"{row['budget']:>16} {row['mean_return']:>12.1f} {row['stderr']:>8.1f} "
            f"{row['improvement']:>12.1f} {row['improvement_stderr']:>8.1f}"
        )


def cmd_demo(args: argparse.Namespace) -> None:
    """`ray-macaw demo [--family F] [--out DIR] [--collect-steps N] [--meta-steps N]`."""
    from ray_macaw.cli.demo import PLANS, format_summary, run_demo
    from ray_macaw.errors import unknown_name

    if args.family not in PLANS:
        raise unknown_name("demo family", args.family, PLANS)
    plan = PLANS[args.family]
    for name in ("collect_steps", "meta_steps"):
        if getattr(args, name) is not None:
            plan = replace(plan, **{name: getattr(args, name)})
    ensure_ray(args.address)
    summary = run_demo(plan, args.out, progress=not args.no_progress)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))


def add_parsers(sub: Any) -> None:
    """Register `train` and `evaluate` on the top-level subparsers."""
    train = sub.add_parser(
        "train",
        help="meta-train MACAW from a YAML run file",
        description="Meta-train MACAW; re-run with --resume to continue.",
    )
    train.add_argument("config", help="YAML run file (settings of MACAWConfig + run options)")
    train.add_argument("--stop-steps", type=int, default=None, help="override stop_meta_steps")
    train.add_argument("--out", default=None, help="override the output directory")
    train.add_argument(
        "--resume", action="store_true", help="continue from OUT/latest if it exists"
    )
    train.add_argument("--address", default=None, help="Ray cluster (default: local Ray)")
    train.add_argument("--json", action="store_true", help="print the final figures as JSON")
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="adapt to each held-out task and roll out")
    evaluate.add_argument("checkpoint", help="checkpoint directory (e.g. OUT/latest)")
    evaluate.add_argument("--episodes", type=int, default=None, help="episodes per task")
    evaluate.add_argument("--adaptation-steps", type=int, default=None)
    evaluate.add_argument("--address", default=None, help="Ray cluster (default: local Ray)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_evaluate)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on point-robot: collect, meta-train, evaluate, fine-tune",
        description="Collect, meta-train MACAW and the MT+FT baseline, adapt to the held-out "
        "tasks, fine-tune online, print a table. Re-running reuses finished stages.",
    )
    demo.add_argument("--family", default="point-robot", help="point-robot or cheetah-vel")
    demo.add_argument("--out", default="runs/demo", help="where everything is written")
    demo.add_argument("--collect-steps", type=int, default=None, help="SAC steps per task")
    demo.add_argument("--meta-steps", type=int, default=None, help="meta-training steps")
    demo.add_argument("--address", default=None, help="Ray cluster (default: local Ray)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(func=cmd_demo)

    tune = sub.add_parser("finetune", help="online fine-tuning on the held-out tasks (Table 1)")
    tune.add_argument("checkpoint", help="checkpoint directory (e.g. OUT/latest)")
    tune.add_argument(
        "--budgets", default="20000,200000", help="extra env steps at which returns are measured"
    )
    tune.add_argument(
        "--preset",
        default="authors",
        choices=("authors", "paper"),
        help="the authors' schedule (spec §7.3, default) or the paper's text (appendix C.2)",
    )
    tune.add_argument("--value-steps", type=int, default=None, help="value steps per round")
    tune.add_argument("--policy-steps", type=int, default=None, help="policy steps per round")
    tune.add_argument(
        "--burn-in-rounds", type=int, default=None, help="rounds that only collect at first"
    )
    tune.add_argument(
        "--fifo-size", type=int, default=None, help="replay buffer size (0: keep everything)"
    )
    tune.add_argument("--batch-size", type=int, default=None, help="rows per update (256)")
    tune.add_argument("--episodes", type=int, default=None, help="episodes per measurement (3)")
    tune.add_argument("--num-cpus-per-task", type=float, default=1.0)
    tune.add_argument("--address", default=None, help="Ray cluster (default: local Ray)")
    tune.add_argument("--json", action="store_true")
    tune.set_defaults(func=cmd_finetune)
