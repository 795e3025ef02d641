from lesionkit.cli.app import main

main()
