if __name__ == "__main__":
    import os

    from fetchshard.signals import die_with_launcher, hold

    hold()  # before the imports below, which take most of a rank's start-up
    die_with_launcher(os.environ)

    from fetchshard.cli import main

    main()
