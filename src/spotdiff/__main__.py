from spotdiff.cli import main

main()
