"""Real-model architectures with their published checkpoint layouts (no torchvision needed).

``vgg`` (torchvision VGG-16, ImageNet or Places365), ``resnet`` (torchvision ResNets), ``inception`` (torchvision
Inception-v3 and pytorch-fid's FID Inception), ``progan`` (GAN Dissection's Progressive GAN conversion),
``stylegan2`` (rosinality's StyleGAN2 port), ``segmenters`` (torchvision DeepLabV3), ``vit`` (timm's ViT and DeiT).
"""
from . import inception, progan, resnet, segmenters, stylegan2, vgg, vit

__all__ = ["vgg", "resnet", "inception", "progan", "stylegan2", "segmenters", "vit"]
