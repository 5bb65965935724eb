"""Where prediction time goes: TensorFlow's step trace of DeepCharge.predict, summed by op scope.

    python benchmarks/profile_predict.py MODEL.pb [--grid 48] [--plain-graph]

Runs a Si64 crystal on an N^3 grid with every Session.run traced (FULL_TRACE) and prints the share
of op time per top-level scope and the slowest ops. With the tabulated networks (the default):
ProdEnvMatA = DeePMD-kit's environment op, ChargeDescriptor = our kernel (tf/table_sum.cc),
tabulated = the frozen fitting net. With --plain-graph: filter_type_* = descriptor embedding,
charge_radial = learned radial sums, layer_* = fitting net. Op times overlap when ops run in
parallel: read them as shares, not as wall time.
"""

import argparse
import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--grid", type=int, default=48)
    parser.add_argument("--plain-graph", action="store_true", help="profile the plain frozen graph")
    args = parser.parse_args()
    from ase.build import bulk
    from deepmd.tf.env import tf

    from deepmd_charge import DeepCharge

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    dc = DeepCharge(args.model, threads=2, tabulate=not args.plain_graph)
    dc.concurrent_calls = 1  # TensorFlow traces one Session.run at a time
    dc.predict(atoms, grid=(16, 16, 16))
    plain_run, per_op = dc.session.tf_session.run, collections.Counter()  # tf/session.py calls tf_session.run per batch

    def traced(fetch, feed_dict):
        meta = tf.RunMetadata()
        out = plain_run(
            fetch, feed_dict=feed_dict, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=meta
        )
        for dev in meta.step_stats.dev_stats:
            for ns in dev.node_stats:
                per_op[ns.node_name] += ns.op_end_rel_micros - ns.op_start_rel_micros
        return out

    dc.session.tf_session.run = traced
    dc.predict(atoms, grid=(args.grid,) * 3)
    total = sum(per_op.values())
    scopes = collections.Counter()
    for name, us in per_op.items():
        scopes[name.split("/")[0]] += us
    print(f"{args.model}, Si64, {args.grid}^3 grid: op time by scope")
    for name, us in scopes.most_common(12):
        print(f"  {name:40s} {us / 1e3:9.1f} ms {100 * us / total:5.1f}%")
    print("slowest ops")
    for name, us in per_op.most_common(12):
        print(f"  {name[:60]:60s} {us / 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
