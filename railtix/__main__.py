from railtix.cli import main

main()
