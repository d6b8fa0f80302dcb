"""Temporary entry point; replaced by the full CLI."""
from __future__ import annotations

import sys

import click

from railtix.serve import DEFAULT_MODEL, MODELS, model
from railtix.serve.options import ServeOptions
from railtix.service.service import Service


@click.group()
def main() -> None:
    """railtix: sell train seats."""


@main.command()
@click.option("--tcp", default="127.0.0.1:5002")
@click.option("--database", default="railtix.db")
@click.option("--model", "model_name", type=click.Choice(list(MODELS)), default=DEFAULT_MODEL)
def serve(tcp: str, database: str, model_name: str) -> None:
    host, _, port = tcp.rpartition(":")
    opts = ServeOptions(tcp_host=host, tcp_port=int(port), database=database,
                        on_ready=lambda a: print(f"railtix listening tcp://{a['tcp'][0]}:{a['tcp'][1]}", flush=True))
    model(model_name)(lambda: Service.open(database), opts)
    sys.exit(0)
