from pgrunbook.cli.main import main

main()
