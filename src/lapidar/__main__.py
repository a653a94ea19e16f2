from lapidar.cli import main

main()
