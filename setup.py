from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="deepmd-charge",
    version="0.1.0",
    description="Deep Charge: learn and predict DFT electron densities with DeePMD-kit",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="LGPL-3.0-or-later",
    python_requires=">=3.10",
    packages=find_packages(include=["deepmd_charge", "deepmd_charge.*"]),
    package_data={"deepmd_charge.tf": ["table_sum.cc"]},  # compiled on first use (tf/kernel.py)
    install_requires=[
        "deepmd-kit[cpu]>=3.2,<3.3",
        "numpy",
        "scipy",
        "dpdata>=0.2.18",
        "ase>=3.23",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "mpi": ["mpi4py", "mpich"],
        "test": [
            "pytest",
            "hypothesis",
            "mpi4py",
            "mpich",
            "ruff==0.17.6",
        ],  # tests/test_lint.py: one ruff, one formatting
    },
    entry_points={
        "deepmd": ["charge = deepmd_charge.entrypoint"],  # loaded by the TF backend (dp --tf train, freeze)
        # loaded whenever `dp` starts (deepmd.backend is imported by every command): makes
        # `dp doc-train-input` list the charge fitting and loss arguments; light, no TensorFlow
        "deepmd.backend": ["charge = deepmd_charge.argcheck"],
        "dpdata.plugins": ["deepmd_charge = deepmd_charge.dpdata_plugin"],
        "console_scripts": ["dp-charge = deepmd_charge.cli:console_main"],
    },
)
