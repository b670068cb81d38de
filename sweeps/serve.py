"""``python -m sweeps serve RUN``: (being written)"""


def add_arguments(p) -> None:
    p.add_argument("run")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--storage")


def main(a) -> int:
    raise NotImplementedError
