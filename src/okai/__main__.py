from okai.cli.app import main

main()
