from railtix.cli import main

main(prog_name="railtix")
