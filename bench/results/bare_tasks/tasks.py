from invoke import task


@task
def hello(c):
    pass
