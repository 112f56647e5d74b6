from django.http import HttpResponse


def queue(request):  # placeholder until the annotator UI lands
    return HttpResponse("EditLoop")


def annotate(request, project_id):  # placeholder until the annotator UI lands
    return HttpResponse("EditLoop")
