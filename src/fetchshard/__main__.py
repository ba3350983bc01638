if __name__ == "__main__":
    from fetchshard.signals import hold

    hold()  # before the imports below, which take most of a rank's start-up

    from fetchshard.cli import main

    main()
