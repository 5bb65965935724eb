"""Our table kernel (ChargeDescriptor) alone: one captured batch, the op on fixed inputs.

    python benchmarks/kernel_alone.py MODEL.pb [--repeats 30]

Predicts Si64 (rattled 0.1 A) on a 64^3 grid, captures the inputs of the first ChargeDescriptor
call of more than 10,000 points (the environment op's em, rij, nlist and the tables), then runs
the op alone on those inputs held in TensorFlow variables (no feeding), best of --repeats, and
prints microseconds per point on the model's threads (2 here). Used to tune table_sum.cc.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from ase.build import bulk
    from deepmd.tf.env import tf

    from deepmd_charge import DeepCharge
    from deepmd_charge.tf.kernel import load_kernel

    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.1, seed=2)
    dc = DeepCharge(args.model, threads=args.threads)
    if not dc.tabulated:
        raise SystemExit(f"the model does not run through the kernel: {dc.why_not_tabulated}")
    dc.concurrent_calls = 1
    s = dc.session  # tf/session.py: run() calls s.tf_session.run(s.output, feed_dict=...) per batch
    op = next(o for o in s.graph.get_operations() if o.type == "ChargeDescriptor")
    plain_run, got = s.tf_session.run, []

    def capture(fetch, feed_dict):
        if not got and feed_dict[s.inputs["t_mesh"]][0] > 10000:
            got.extend(plain_run(list(op.inputs), feed_dict=feed_dict))
        return plain_run(fetch, feed_dict=feed_dict)

    s.tf_session.run = capture
    dc.predict(atoms, grid=(64, 64, 64))
    kernel = load_kernel()  # the library already loaded: its op wrapper
    with s.graph.as_default():
        init = [tf.placeholder(a.dtype, a.shape) for a in got[:3]]
        held = [tf.Variable(p, trainable=False) for p in init]
        clone = kernel.charge_descriptor(
            *held,
            *[tf.constant(a) for a in got[3:]],
            sel=op.get_attr("sel"),
            axis=op.get_attr("axis"),
            tail=op.get_attr("tail"),
            tail_residual=op.get_attr("tail_residual"),
        )
        first = [tf.reduce_sum(clone[0][:, :1]), tf.reduce_sum(clone[1])]
    plain_run(tf.variables_initializer(held), dict(zip(init, got[:3])))
    plain_run(first)
    best = 1e9
    for _ in range(args.repeats):
        t = time.perf_counter()
        plain_run(first)
        best = min(best, time.perf_counter() - t)
    npts = got[0].shape[0]
    print(
        f"{args.model}: ChargeDescriptor on {npts} points, {args.threads} threads: {best * 1e3:.2f} ms, {best / npts * 1e6:.3f} us/point"
    )


if __name__ == "__main__":
    main()
