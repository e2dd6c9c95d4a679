"""The `fleetscale` console command (also `python -m autoscaler`): the compiled replay modules, then the CLI.

The opt-in must come before the first import of the replay's modules, and `autoscaler.cli` imports them when it
registers its commands; hence this entry point, apart from the CLI package (autoscaler/native.py).
"""

from __future__ import annotations

from autoscaler.native import use_compiled_build


def main() -> None:
    """Run `fleetscale` on the compiled build when it matches the sources (else on them, as native.py says)."""
    use_compiled_build()
    from autoscaler.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
